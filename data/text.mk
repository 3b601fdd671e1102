# Text data: the GPT-2 tokenizer, llm.c token shards and their loader, the
# prepare_text tool and the default corpus (the King James Bible).
#
#   make data                 prepare_text + data/bible/bible_{train,val}_000000.bin
#   make run-test-tokenizer   ids against the reference JS encoder, round trips
#   make run-test-shards      shard writer/loader, bad shards rejected
#   make run-test-tokdata     shuffling, resume, nanoGPT's format, bounded memory, bytes
#   make bench-tokenizer      MB/s on the Bible: ours and the JS encoder, same run
TEXT_OBJS := $(BUILD)/data/tokenizer.o $(BUILD)/data/shards.o $(COMMON_OBJS)

prepare_text: $(BUILD)/data/prepare_text.o $(TEXT_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

test_tokenizer: $(BUILD)/test_tokenizer.o $(BUILD)/data/tokenizer.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

test_shards: $(BUILD)/test_shards.o $(TEXT_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# `data` may gather other datasets too, so the recipe lives in data-bible
.PHONY: data-bible run-test-tokenizer run-test-shards bench-tokenizer
data: data-bible
data-bible: prepare_text setup
	@bash dev/prepare_bible.sh

# the tokenizer test also encodes the cleaned Bible text (quick to extract)
run-test-tokenizer: test_tokenizer setup
	@bash dev/prepare_bible.sh --text-only
	./test_tokenizer

# the shard test also runs ./prepare_text
run-test-shards: test_shards prepare_text setup
	./test_shards

bench-tokenizer: test_tokenizer setup $(BUILD)/bin/bench_fma
	@bash dev/prepare_bible.sh --text-only
	{ $(BUILD)/bin/bench_fma 1 | head -1; ./test_tokenizer --bench | grep '^bible'; \
	  node dev/tokenizer_ref.js corpus --reps 3 data/bible/text/*.txt 2>&1 >/dev/null; } | tee dev/results/bench_tokenizer.txt
	python3 dev/bench/bench_md.py tokenizer dev/results/bench_tokenizer.txt > dev/results/bench_tokenizer.md
	python3 dev/bench/readme_table.py dev/results/bench_tokenizer.md README.md

# token data at scale (issue 14): MT19937 and llm.c's shuffled order against
# references written in Python, resumes, nanoGPT's .bin, GiB-sized sparse files
# in bounded memory, prepare_text --bytes and --vocab-size (dev/test_tokdata.py)
.PHONY: run-test-tokdata
run-test-tokdata: test_shards prepare_text $(BUILD)/bin/train_gpt2_adamw setup
	$(PYTHON) dev/test_tokdata.py $(BUILD)/bin/train_gpt2_adamw

TESTS += run-test-tokenizer run-test-shards run-test-tokdata
BINS += prepare_text test_tokenizer test_shards
