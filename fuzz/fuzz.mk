# libFuzzer harnesses (clang, -fsanitize=fuzzer,address,undefined) for the
# loaders of files a user may be handed: GPT-2 and ViT checkpoints, llm.c
# token shards, image shards, the tokenizer files, SlimAdam rules, optimizer
# state, resume records, idx files, image files. Fuzzing is not part of
# `make test`; replaying the seeds and the crashing inputs found is (below).
#
#   make fuzz                               build, then run each harness for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ=gpt2_checkpoint FUZZ_SECONDS=600
#
# Each starts from its seeds in fuzz/seeds/<name>/ (tiny valid files and the
# crafted headers of issue 15); the inputs it finds go to build/fuzz/corpus/<name>/
# (kept between runs), a crash or hang to build/fuzz/crashes/<name>-*, and the
# run's count of executions is printed. The loaders' fail() returns to the
# harness instead of exiting (common/utils.h, FUZZING).
FUZZ_OPTIM_STATES := $(addprefix optim_state_,$(OPTIMS))
FUZZ ?= gpt2_checkpoint vit_checkpoint token_shard image_shard tokenizer_llmc bpe slimadam_rules \
        $(FUZZ_OPTIM_STATES) resume_gpt2 resume_vit idx image_file
# FUZZ_RUNS > 0: run each harness for that many executions instead of FUZZ_SECONDS
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 0
FUZZ_CC := clang
FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -march=native -fopenmp \
               -std=gnu11 -Wall -Wextra -Wno-unused-function -Wno-pass-failed -I. -DFUZZING
FUZZ_SRC_gpt2_checkpoint := nn/layers.c nn/matmul.c nn/attention.c run/model.c optim/optim.c optim/adamw.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_vit_checkpoint := nn/layers.c nn/matmul.c nn/attention.c run/model.c optim/optim.c optim/snr.c optim/adamw.c run/run.c run/flags.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_token_shard := data/shards.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_image_shard := data/images.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_tokenizer_llmc := data/tokenizer.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_bpe := data/tokenizer.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_slimadam_rules := optim/optim.c optim/slimadam.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_resume_gpt2 := nn/layers.c nn/matmul.c nn/attention.c run/model.c optim/optim.c optim/snr.c optim/adamw.c run/run.c run/flags.c data/shards.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_resume_vit := nn/layers.c nn/matmul.c nn/attention.c run/model.c optim/optim.c optim/snr.c optim/adamw.c run/run.c run/flags.c data/images.c \
                       common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_idx := data/images.c common/utils.c common/mt19937.c common/profile.c
FUZZ_SRC_image_file := data/images.c data/image_folders.c common/utils.c common/mt19937.c common/profile.c




# the commit a harness was built from (fuzz/run.sh records it), +dirty when
# the sources differed from it
FUZZ_COMMIT = echo "$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(git status --porcelain \
              --untracked-files=no -- common data optim run nn fuzz train_gpt2.c train_vit.c ':!fuzz/runs.tsv' \
              ':!fuzz/counts.md' 2>/dev/null | grep -q . && echo +dirty)"

.PHONY: fuzz
build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(wildcard */*.c */*.h *.c) | deps/.setup-done
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_SRC_$*) -o $@ -lcjson -lz -lm -lstb -ljpeg
	@$(FUZZ_COMMIT) > $@.commit
# one optimizer-state harness per optimizer, each linked with its optimizer
build/fuzz/fuzz_optim_state_%: fuzz/fuzz_optim_state.c fuzz/fuzz.h fuzz/fuzz_model.h $(wildcard */*.c */*.h *.c) \
                               | deps/.setup-done
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< optim/optim.c optim/sinkhorn.c optim/$*.c common/utils.c common/mt19937.c common/profile.c -o $@ -lcjson -lz -lm -lstb -ljpeg
	@$(FUZZ_COMMIT) > $@.commit

fuzz: $(addprefix build/fuzz/fuzz_,$(FUZZ))
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) bash fuzz/run.sh $(FUZZ)

# the executions of every harness so far (fuzz/runs.tsv), also written to fuzz/counts.md
.PHONY: fuzz-counts fuzz-seeds
fuzz-counts:
	@bash fuzz/counts.sh

# rewrite the seeds: the scripted ones, and each optimizer's state after two steps
fuzz-seeds: $(addprefix build/fuzz/fuzz_,$(FUZZ_OPTIM_STATES))
	$(PYTHON) fuzz/make_seeds.py
	@for o in $(OPTIMS); do mkdir -p fuzz/seeds/optim_state_$$o; \
	    FUZZ_WRITE_SEED=fuzz/seeds/optim_state_$$o/state.bin build/fuzz/fuzz_optim_state_$$o > /dev/null; done

# ---------------------------------------------------------------------------
# make test: each harness, built with gcc around fuzz/replay.c (no libFuzzer
# needed) and always under AddressSanitizer + UBSan, runs once on each of its
# seeds and on every input a fuzzer ever found to crash, hang or leak
# (fuzz/regressions/<harness>/, kept as regression tests). gcc leaves
# float-cast-overflow out of -fsanitize=undefined (clang has it): it is named.
FUZZ_ALL := gpt2_checkpoint vit_checkpoint token_shard image_shard tokenizer_llmc bpe slimadam_rules \
            $(FUZZ_OPTIM_STATES) resume_gpt2 resume_vit idx image_file
REPLAY_BUILD := build/fuzz-replay
REPLAY_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
                 -march=native -fopenmp -std=gnu11 -Wall -Wextra -Wno-unused-function -fno-math-errno -I. -MMD -MP \
                 -DFUZZING
-include $(shell find $(REPLAY_BUILD) -name '*.d' 2>/dev/null)
$(REPLAY_BUILD)/%.o: %.c | deps/.setup-done
	@mkdir -p $(dir $@)
	$(CC) $(REPLAY_CFLAGS) -c $< -o $@
replay_objs = $(patsubst %.c,$(REPLAY_BUILD)/%.o,$(1))
$(REPLAY_BUILD)/replay_optim_state_%: $(call replay_objs,fuzz/replay.c fuzz/fuzz_optim_state.c optim/optim.c optim/sinkhorn.c common/utils.c common/mt19937.c common/profile.c) \
                                      $(REPLAY_BUILD)/optim/%.o
	$(CC) $(REPLAY_CFLAGS) $^ -o $@ -lcjson -lz -lm -lstb -ljpeg
.SECONDEXPANSION:
$(REPLAY_BUILD)/replay_%: $$(call replay_objs,fuzz/replay.c fuzz/fuzz_$$*.c $$(FUZZ_SRC_$$*))
	$(CC) $(REPLAY_CFLAGS) $^ -o $@ -lcjson -lz -lm -lstb -ljpeg

TESTS += run-test-fuzz-replay
run-test-fuzz-replay: $(addprefix $(REPLAY_BUILD)/replay_,$(FUZZ_ALL))
	@for f in $(FUZZ_ALL); do \
	    printf '%-22s ' $$f; \
	    OMP_NUM_THREADS=1 timeout 600 $(REPLAY_BUILD)/replay_$$f fuzz/seeds/$$f/* $$(ls -d fuzz/regressions/$$f/* 2>/dev/null) \
	        || { echo "FAIL: replaying the inputs of $$f (fuzz/seeds/$$f, fuzz/regressions/$$f)"; exit 1; }; \
	done
