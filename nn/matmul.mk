# nn/matmul: the packed SGEMM behind every linear layer.
#
#   make run-test-matmul     correctness + thread determinism (AVX-512 build; also with
#                            fewer threads than a product asks for)
#   make run-test-matmul-portable   the same tests on the plain-C fallback
#   make bench-matmul        GFLOP/s on the GPT-2 shapes next to OpenBLAS

MATMUL_OBJ := $(BUILD)/nn/matmul.o

test_matmul: $(BUILD)/test_matmul.o $(MATMUL_OBJ) $(COMMON_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The fallback path (no AVX-512) compiled from the same source, so the tests
# cover the code that runs on other x86-64 machines.
$(BUILD)/nn/matmul_portable.o: nn/matmul.c | deps/.setup-done
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -mno-avx512f -c $< -o $@

test_matmul_portable: $(BUILD)/test_matmul.o $(BUILD)/nn/matmul_portable.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

.PHONY: run-test-matmul run-test-matmul-portable bench-matmul
run-test-matmul: test_matmul
	./test_matmul
	OMP_THREAD_LIMIT=2 ./test_matmul determinism
run-test-matmul-portable: test_matmul_portable
	./test_matmul_portable

TESTS += run-test-matmul run-test-matmul-portable
BINS += test_matmul test_matmul_portable

# The benchmark links OpenBLAS (Debian libopenblas-dev) as the peer to beat;
# the product code never does.
bench_matmul: $(BUILD)/dev/bench/bench_matmul.o $(MATMUL_OBJ) $(COMMON_OBJS)
	@test -f /usr/include/x86_64-linux-gnu/cblas.h -o -f /usr/include/cblas.h || \
	  { echo "error: bench_matmul needs OpenBLAS: apt-get install libopenblas-dev" >&2; exit 1; }
	$(CC) $(LDFLAGS) $^ -o $@ -lopenblas $(LDLIBS)
bench-matmul: bench_matmul $(BUILD)/bin/bench_fma
	{ $(BUILD)/bin/bench_fma | head -1; ./bench_matmul; } | tee dev/results/bench_matmul.txt
	python3 dev/bench/bench_md.py matmul dev/results/bench_matmul.txt > dev/results/bench_matmul.md
	python3 dev/bench/readme_table.py dev/results/bench_matmul.md README.md
BINS += bench_matmul

# Playground for the kernel (dev/kernels/): each tool includes nn/matmul.c to
# reach its static functions; EXTRA_KFLAGS can override MR, NR, KC, MC, NC.
MATMUL_KERNELS := $(addprefix $(BUILD)/dev/kernels/,kernel_speed pack_speed tune_gemm)
$(MATMUL_KERNELS): $(BUILD)/dev/kernels/%: dev/kernels/%.c nn/matmul.c $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(EXTRA_KFLAGS) $< $(COMMON_OBJS) -o $@ $(LDLIBS)
.PHONY: matmul-kernels
matmul-kernels: $(MATMUL_KERNELS)

# bf16 (make PRECISION=bf16, Makefile): the same source with the linear layers
# on sgemm_bf16. The BF16 instructions are enabled for this object whatever
# the build machine; on a CPU without them the binary stops at start-up with a
# one-line error (a constructor in nn/matmul.c checks cpuid).
BF16_CFLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -DPRECISION_BF16
$(BUILD)/nn/matmul_bf16.o: nn/matmul.c | deps/.setup-done
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BF16_CFLAGS) -c $< -o $@

# the matmul tests with the linear layers in bf16
test_matmul_bf16: $(BUILD)/test_matmul.o $(BUILD)/nn/matmul_bf16.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
.PHONY: run-test-matmul-bf16
run-test-matmul-bf16: test_matmul_bf16
	@if grep -qw avx512_bf16 /proc/cpuinfo; then ./test_matmul_bf16 && OMP_THREAD_LIMIT=2 ./test_matmul_bf16 determinism; \
	 else echo "run-test-matmul-bf16: SKIPPED: this CPU has no AVX-512 BF16 (the bf16 build refuses to run here)"; fi
TESTS += run-test-matmul-bf16
BINS += test_matmul_bf16

# sgemm_bf16 against sgemm at the GEMM shapes of a GPT-2 124M step (B 4 x T 1024)
bench_gemm_bf16: $(BUILD)/dev/bench/bench_gemm_bf16.o $(MATMUL_OBJ) $(COMMON_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
.PHONY: bench-gemm-bf16
bench-gemm-bf16: bench_gemm_bf16
	./bench_gemm_bf16
BINS += bench_gemm_bf16
