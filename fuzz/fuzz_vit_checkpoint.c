// libFuzzer harness: the ViT checkpoint loader (train_vit.c), then the
// activations for one image and a forward pass over a blank image, which use
// every size the header gave.
#define TESTING
#include "train_vit.c"
#include "fuzz/fuzz.h"

static ViT model;
static float *images;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_file(data, size);
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        vit_build_from_checkpoint(&model, path);
        const ViTConfig *c = &model.config;
        vit_allocate_activations(&model, 1);
        images = calloc_or_fail((size_t)c->image_channels * c->image_height * c->image_width, sizeof(float), "image");
        int label = 0;
        vit_forward(&model, images, &label, 1);
    }
    fuzz_fail_jump = NULL;
    free(images);
    images = NULL;
    vit_free(&model);
    memset(&model, 0, sizeof(model));
    return 0;
}
