// test_vit_bf16: the C ViT of a PRECISION=bf16 build against PyTorch computing
// the same thing (dev/vit_ref_bf16.py: the batch and model of test_vit, every
// matmul input, the attention's included, rounded to bf16, the patch embedding
// as a matmul of the patches, float32 sums). The criteria and why they are
// what they are: see test_gpt2_bf16.c. Here, as there, the forward is judged
// the same way as the gradients, against the bf16 effect (|bf16 ref - fp32
// ref|), because in this small model one flipped rounding shows in
// everything. With the attention in fp32 (before it was bf16 too) one of
// layer 0's 504 attention outputs rounded to the other bf16 neighbour, which
// moved the logits by 0.19 of the bf16 effect, the loss by 0.14 and all
// gradients by 0.27; PyTorch itself moves by up to 0.34, 0.14 and 0.39 when
// its weights are multiplied by 1 + 5e-7 N(0, 1) (dev/vit_ref_bf16.py
// --sensitivity). Now, with the attention's products in bf16 on both sides,
// none of these flips shows: 0.00, 0.00 and 0.02. Each must stay within 0.5
// of the bf16 effect: the fp32 model is at 1.
#define TESTING
#include "train_vit.c"

#include "test_bf16.h"

#define VIT_BF16_RATIO 0.5 // the logits, the loss and all gradients: |ours - bf16 ref| / |bf16 ref - fp32 ref|

static const char *const tensor_names[NUM_PARAMETER_TENSORS] = {
    "patchw", "patchb", "cls", "pos", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "headw", "headb"};

// the first part of a vit_tiny_debug file: images, labels, logits, loss, gradients
static void read_debug(const char *path, int B, size_t image_floats, int K, size_t np, float *images, int *labels,
                       float *logits, float *loss, float *grads) {
    FILE *f = fopen_or_fail(path, "rb");
    int header[256];
    fread_or_fail(header, sizeof(int), 256, f, path);
    if (header[0] != 20241018 || header[1] != 1 || header[2] != B) fail("%s: bad magic, version or batch", path);
    fread_or_fail(images, sizeof(float), image_floats, f, path);
    fread_or_fail(labels, sizeof(int), B, f, path);
    fread_or_fail(logits, sizeof(float), (size_t)B * K, f, path);
    fread_or_fail(loss, sizeof(float), 1, f, path);
    fread_or_fail(grads, sizeof(float), np, f, path);
    fclose(f);
}

int main(void) {
    if (strcmp(matmul_precision(), "bf16") != 0) fail("test_vit_bf16: link it with nn/matmul_bf16.o (make test_vit_bf16)");
    (void)vit_predict, (void)vit_label_rank, (void)vit_param_blocks, (void)vit_resume_data;  // train_vit.c's, unused here
    ViT model;
    vit_build_from_checkpoint(&model, "dev/testdata/vit_tiny.bin");
    const ViTConfig *c = &model.config;
    FILE *f = fopen_or_fail("dev/testdata/vit_tiny_debug.bin", "rb");
    int header[256];
    fread_or_fail(header, sizeof(int), 256, f, "dev/testdata/vit_tiny_debug.bin");
    fclose(f);
    int B = header[2], K = c->num_classes;
    size_t image_floats = (size_t)B * c->image_channels * c->image_height * c->image_width, np = model.mem.num_parameters;
    float *images = malloc_or_fail(image_floats * sizeof(float), "images"), *images2 = malloc_or_fail(image_floats * sizeof(float), "images");
    int *labels = malloc_or_fail(B * sizeof(int), "labels"), *labels2 = malloc_or_fail(B * sizeof(int), "labels");
    float *logits_bf16 = malloc_or_fail((size_t)B * K * sizeof(float), "logits"), *logits_fp32 = malloc_or_fail((size_t)B * K * sizeof(float), "logits");
    float *grads_bf16 = malloc_or_fail(np * sizeof(float), "grads"), *grads_fp32 = malloc_or_fail(np * sizeof(float), "grads");
    float loss_bf16, loss_fp32;
    read_debug("dev/testdata/vit_tiny_debug_bf16.bin", B, image_floats, K, np, images, labels, logits_bf16, &loss_bf16, grads_bf16);
    read_debug("dev/testdata/vit_tiny_debug.bin", B, image_floats, K, np, images2, labels2, logits_fp32, &loss_fp32, grads_fp32);
    if (memcmp(images, images2, image_floats * sizeof(float)) || memcmp(labels, labels2, B * sizeof(int)))
        fail("the two debug files hold different batches");

    vit_allocate_gradients(&model, 0);
    vit_allocate_activations(&model, B);
    vit_forward(&model, images, NULL, B);
    check_bf16_logits_vs_effect(model.acts.logits, logits_bf16, logits_fp32, (size_t)B * K, VIT_BF16_RATIO);

    vit_forward(&model, images, labels, B);
    check_bf16_loss_vs_effect(model.mean_loss, loss_bf16, loss_fp32, VIT_BF16_RATIO);

    model_zero_grad(&model.mem);
    vit_backward(&model, 1.0f, NULL);
    check_bf16_grads(tensor_names, model.mem.param_list.size, NUM_PARAMETER_TENSORS, model.mem.grads_memory, grads_bf16, grads_fp32,
                     VIT_BF16_RATIO);
    free(images), free(images2), free(labels), free(labels2), free(logits_bf16), free(logits_fp32);
    free(grads_bf16), free(grads_fp32);
    vit_free(&model);
    if (failures) {
        printf("test_vit_bf16: %d FAILED\n", failures);
        return 1;
    }
    printf("test_vit_bf16: all passed\n");
    return 0;
}
