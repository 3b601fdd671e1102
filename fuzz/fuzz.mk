# libFuzzer harnesses (clang, -fsanitize=fuzzer,address,undefined) for the
# loaders of files a user may be handed: GPT-2 and ViT checkpoints, llm.c
# token shards, image shards. Not part of `make test`.
#
#   make fuzz                               build, then run each harness for FUZZ_SECONDS (default 60)
#   make fuzz FUZZ=gpt2_checkpoint FUZZ_SECONDS=600
#
# Each starts from its seeds in fuzz/seeds/<name>/ (tiny valid files and the
# crafted headers of issue 15); the inputs it finds go to build/fuzz/corpus/<name>/
# (kept between runs), a crash or hang to build/fuzz/crashes/<name>-*, and the
# run's count of executions is printed. The loaders' fail() returns to the
# harness instead of exiting (common/utils.h, FUZZING).
FUZZ ?= gpt2_checkpoint vit_checkpoint token_shard image_shard
FUZZ_SECONDS ?= 60
FUZZ_CC := clang
FUZZ_CFLAGS := -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -march=native -fopenmp \
               -std=gnu11 -Wall -Wextra -Wno-unused-function -Wno-pass-failed -I. -DFUZZING
FUZZ_SRC_gpt2_checkpoint := nn/layers.c nn/matmul.c optim/optim.c optim/adamw.c common/utils.c
FUZZ_SRC_vit_checkpoint := nn/layers.c nn/matmul.c optim/optim.c optim/snr.c optim/adamw.c run/run.c common/utils.c
FUZZ_SRC_token_shard := data/shards.c common/utils.c common/mt19937.c
FUZZ_SRC_image_shard := data/images.c common/utils.c

.PHONY: fuzz
build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(wildcard */*.c */*.h *.c) | deps/.setup-done
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_SRC_$*) -o $@ -lcjson -lz -lm -lstb

fuzz: $(addprefix build/fuzz/fuzz_,$(FUZZ))
	@for f in $(FUZZ); do \
	    mkdir -p build/fuzz/corpus/$$f build/fuzz/crashes; \
	    OMP_NUM_THREADS=1 build/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	        -rss_limit_mb=2048 -detect_leaks=0 -close_fd_mask=3 -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/crashes/$$f- build/fuzz/corpus/$$f fuzz/seeds/$$f > build/fuzz/$$f.log 2>&1; \
	    status=$$?; \
	    echo "fuzz $$f: $$(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz/$$f.log) executions in $(FUZZ_SECONDS) s," \
	         "corpus $$(ls build/fuzz/corpus/$$f | wc -l) inputs, exit $$status (log: build/fuzz/$$f.log)"; \
	    [ $$status = 0 ] || { grep -E "^(==|SUMMARY|artifact_prefix|Test unit written)" build/fuzz/$$f.log | head -20; exit 1; }; \
	done
