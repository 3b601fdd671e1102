// test_gpt2_bf16: the C GPT-2 of a PRECISION=bf16 build against PyTorch
// computing the same thing (dev/gpt2_ref_bf16.py: the batch and model of
// test_gpt2, every matmul input of the linear layers rounded to bf16, float32
// sums; the attention fp32, as the trainers link it).
//
// What agreement to expect. Both sides round the same values to bf16, but
// those values come out of fp32 arithmetic done in another order (LayerNorm,
// GELU, softmax, attention), so they differ in their last bits; where such a
// value lies near the middle between two bf16 numbers the two sides round it
// to different neighbours, one bf16 step (2^-8 relative) apart. The backward
// rounds every output gradient again, and a weight gradient sums over all
// rows, so one flipped rounding reaches every element of the gradients below
// it. PyTorch itself moves by 0-0.16 of the bf16 effect (|bf16 - fp32|: the
// logits' largest difference), 0-0.10 in the loss and 0.03-0.64 in the
// gradients (L2 norm per tensor) when its weights are multiplied by
// 1 + 1.2e-7 N(0, 1), about one fp32 ulp (dev/gpt2_ref_bf16.py --sensitivity,
// three perturbations, measured with the attention in bf16 too). With the
// attention in fp32 the forward rounds only the linear layers' inputs, and in
// this build none of them flips: the logits agree to 2.4e-7 (of 2.3), the
// loss exactly. So the logits and the loss must be within 0.01 of the bf16
// effect of the bf16 reference (as tight as the old absolute limits of 2e-5
// of the largest logit and 1e-6 in the loss), each gradient tensor within 0.5
// (the fp32 model is at 1, a wrong rounding further), and all gradients
// together within 0.25 (this build: 0.06).
#define TESTING
#include "train_gpt2.c"

#include "test_bf16.h"

#define GPT2_BF16_FORWARD_RATIO 0.01 // the logits and the loss: |ours - bf16 ref| / |bf16 ref - fp32 ref|

static void read_debug(const char *path, int B, int T, int V, size_t nparams, int *x, int *y, float *logits,
                       float *loss, float *grads) {
    FILE *f = fopen_or_fail(path, "rb");
    int header[256];
    fread_or_fail(header, sizeof(int), 256, f, path);
    if (header[0] != 20240327 || header[1] != 1 || header[2] != B || header[3] != T || header[4] != V)
        fail("%s: not a debug file of B %d, T %d, V %d", path, B, T, V);
    fread_or_fail(x, sizeof(int), (size_t)B * T, f, path);
    fread_or_fail(y, sizeof(int), (size_t)B * T, f, path);
    fread_or_fail(logits, sizeof(float), (size_t)B * T * V, f, path);
    fread_or_fail(loss, sizeof(float), 1, f, path);
    fread_or_fail(grads, sizeof(float), nparams, f, path);
    fclose(f);
}

int main(void) {
    if (strcmp(matmul_precision(), "bf16") != 0) fail("test_gpt2_bf16: link it with nn/matmul_bf16.o (make test_gpt2_bf16)");
    (void)gpt2_param_blocks, (void)gpt2_resume_data;  // train_gpt2.c's, unused here
    GPT2 model;
    gpt2_build_from_checkpoint(&model, "dev/testdata/gpt2_tiny.bin");
    const GPT2Config *c = &model.config;
    FILE *f = fopen_or_fail("dev/testdata/gpt2_tiny_debug.bin", "rb");
    int header[256];
    fread_or_fail(header, sizeof(int), 256, f, "dev/testdata/gpt2_tiny_debug.bin");
    fclose(f);
    int B = header[2], T = header[3], V = c->vocab_size, Vp = c->padded_vocab_size;
    size_t BT = (size_t)B * T, np = model.mem.num_parameters;
    int *x = malloc_or_fail(BT * sizeof(int), "x"), *y = malloc_or_fail(BT * sizeof(int), "y");
    int *x2 = malloc_or_fail(BT * sizeof(int), "x"), *y2 = malloc_or_fail(BT * sizeof(int), "y");
    float *logits_bf16 = malloc_or_fail(BT * V * sizeof(float), "logits"), *logits_fp32 = malloc_or_fail(BT * V * sizeof(float), "logits");
    float *grads_bf16 = malloc_or_fail(np * sizeof(float), "grads"), *grads_fp32 = malloc_or_fail(np * sizeof(float), "grads");
    float loss_bf16, loss_fp32;
    read_debug("dev/testdata/gpt2_tiny_debug_bf16.bin", B, T, V, np, x, y, logits_bf16, &loss_bf16, grads_bf16);
    read_debug("dev/testdata/gpt2_tiny_debug.bin", B, T, V, np, x2, y2, logits_fp32, &loss_fp32, grads_fp32);
    if (memcmp(x, x2, BT * sizeof(int)) || memcmp(y, y2, BT * sizeof(int))) fail("the two debug files hold different batches");

    gpt2_allocate_gradients(&model, 0);
    gpt2_allocate_activations(&model, B, T);
    // logits (gpt2_logits after a forward without targets; first V of Vp columns)
    gpt2_forward(&model, x, NULL, B, T);
    float *all_logits = malloc_or_fail(BT * Vp * sizeof(float), "logits");
    gpt2_logits(&model, all_logits);
    float *logits = malloc_or_fail(BT * V * sizeof(float), "logits copy");
    for (size_t i = 0; i < BT; i++) memcpy(logits + i * V, all_logits + i * Vp, V * sizeof(float));
    free(all_logits);
    check_bf16_logits_vs_effect(logits, logits_bf16, logits_fp32, BT * V, GPT2_BF16_FORWARD_RATIO);

    gpt2_forward(&model, x, y, B, T);
    check_bf16_loss_vs_effect(model.mean_loss, loss_bf16, loss_fp32, GPT2_BF16_FORWARD_RATIO);

    model_zero_grad(&model.mem);
    gpt2_backward(&model, 1.0f, NULL);
    const char *const names[NUM_PARAMETER_TENSORS] = {"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
                                                "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};
    check_bf16_grads(names, model.mem.param_list.size, NUM_PARAMETER_TENSORS, model.mem.grads_memory, grads_bf16, grads_fp32, TOTAL_RATIO);
    free(x), free(y), free(x2), free(y2), free(logits), free(logits_bf16), free(logits_fp32);
    free(grads_bf16), free(grads_fp32);
    gpt2_free(&model);
    if (failures) {
        printf("test_gpt2_bf16: %d FAILED\n", failures);
        return 1;
    }
    printf("test_gpt2_bf16: all passed\n");
    return 0;
}
