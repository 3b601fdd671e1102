# The Vision Transformer trainer and its tests (included by the Makefile after
# the objects both trainers link).
#
#   make train_vit OPTIM=sgd_sai   the ViT trainer with one optimizer compiled in
#   make train-vit                 set up and train the default small ViT on Fashion-MNIST
#   make run-test-vit              the C ViT against PyTorch (dev/testdata/vit_tiny*.bin)
#   make run-test-vit-resume       runs interrupted (SIGKILL, Ctrl-C) and resumed end bit-identical
#                                  to uninterrupted ones (AdamW, SGD-SaI); bad input is rejected
#   make vit-ref                   rewrite the PyTorch reference (needs dev/setup.sh --python)
VIT_OBJS = $(OPTIM_COMMON_OBJS) $(NN_OBJS) $(MODEL_OBJS) $(RUN_OBJS) $(MEMPLAN_OBJS) $(DIST_OBJS) $(TRAIN_LOOP_OBJS) $(IMAGES_OBJS)

# $(BUILD)/vit/train_vit_<optim> for each optimizer, and the bf16 ones; as for
# GPT-2, ./train_vit is a copy of the one OPTIM and PRECISION name
$(BUILD)/vit/train_vit_%: $(BUILD)/train_vit.o $(BUILD)/optim/%.o $(VIT_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/vit-bf16/train_vit_%: $(BUILD)/train_vit.o $(BUILD)/optim/%.o $(call bf16_objs,$(VIT_OBJS))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
BINS += train_vit
VIT_BIN_DIR_fp32 := $(BUILD)/vit
VIT_BIN_DIR_bf16 := $(BUILD)/vit-bf16
train_vit: $(VIT_BIN_DIR_$(PRECISION))/train_vit_$(OPTIM) $(BUILD)/optim-choice $(BUILD)/precision-choice build/mpi-choice
	cp $< $@

TESTS += run-test-vit
BINS += test_vit
test_vit: $(BUILD)/test_vit.o $(NN_OBJS) $(MODEL_OBJS) $(OPTIM_COMMON_OBJS) $(BUILD)/optim/adamw.o $(RUN_OBJS) $(COMMON_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
# the bf16 build's ViT against PyTorch with bf16 matmul inputs (dev/vit_ref_bf16.py)
TESTS += run-test-vit-bf16
BINS += test_vit_bf16
test_vit_bf16: $(BUILD)/test_vit_bf16.o $(call bf16_objs,$(NN_OBJS)) $(MODEL_OBJS) $(OPTIM_COMMON_OBJS) $(BUILD)/optim/adamw.o $(RUN_OBJS) $(COMMON_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
.PHONY: run-test-vit-bf16 vit-bf16-ref
run-test-vit-bf16: test_vit_bf16
	@if grep -qw avx512_bf16 /proc/cpuinfo; then ./test_vit_bf16; \
	 else echo "run-test-vit-bf16: SKIPPED: this CPU has no AVX-512 BF16 (the bf16 build refuses to run here)"; fi
vit-bf16-ref:
	$(PYTHON) dev/vit_ref_bf16.py
.PHONY: run-test-vit run-test-vit-resume vit-ref train-vit
run-test-vit: test_vit
	./test_vit

# the resume test checks one trainer per optimizer it names
VIT_RESUME_BINS := $(addprefix $(BUILD)/vit/train_vit_,adamw sgd_sai)
TESTS += run-test-vit-resume
run-test-vit-resume: $(VIT_RESUME_BINS)
	bash dev/test_vit_resume.sh $(VIT_RESUME_BINS)

vit-ref:
	$(PYTHON) dev/vit_ref.py

# The default small ViT on Fashion-MNIST; the README's command: fmnist-tiny,
# 10 epochs, about 2 minutes on 2 cores. Each optimizer's lr is the best of a
# small sweep on this config (README); the others use their defaults.
VIT_TRAIN_FLAGS := -e fmnist-tiny --epochs 10 -c 0.05 -u 200 -k cosine -q 0 -v 468 -p 500
VIT_LR_adamw := 2e-3
VIT_LR_sgd_sai := 1e-2
train-vit: setup train_vit
	./train_vit $(VIT_TRAIN_FLAGS) $(if $(VIT_LR_$(OPTIM)),-l $(VIT_LR_$(OPTIM))) -o out/vit_fmnist_$(OPTIM)$(PRECISION_SUFFIX) -y 1
