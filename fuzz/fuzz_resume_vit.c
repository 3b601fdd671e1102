// libFuzzer harness: a ViT run's resume record (state_<step>.json): read as
// -y 1 reads it (ckpt_read_state, run/run.c), checked against the run's flags
// (run_resume_check_state), then the ViT trainer's own keys (vit_resume_data,
// train_vit.c): the loader's epoch, position and generator on a set of 5
// images of 1x2x2 pixels, from which the next two batches of 2 are then
// drawn (shuffled, cropped, flipped). The record is named state_00000007.json.
#define TESTING
#include "train_vit.c"
#include "fuzz/fuzz.h"
#include "fuzz/fuzz_resume.h"

static RunConfig rc;
static ImageSet set;
static ImageLoader loader;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    set.count = 5;
    set.channels = 1;
    set.height = set.width = 2;
    set.num_classes = 2;
    set.pixels = alloc_big(20, "pixels");
    set.labels = calloc_or_fail(5, sizeof(int32_t), "labels");
    set.class_names = calloc_or_fail(2, IMAGE_CLASS_NAME_LEN, "class names");
    for (int i = 0; i < 20; i++) set.pixels[i] = (uint8_t)(i * 13);
    for (int i = 0; i < 5; i++) set.labels[i] = i % 2;
    rc.B = 2;
    rc.grad_accum = 1;
    float mean[1] = {0.5f}, std[1] = {0.25f};
    image_loader_init(&loader, &set, rc.B, 1, 1, 1, 1, mean, std);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    static Run run;
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        cJSON *state = fuzz_resume_record(data, size, &rc, &run, path, sizeof(path));
        vit_resume_data(state, path, &loader, "the fuzzer's 5 images");
        float images[2 * 4];
        int labels[2];
        for (int b = 0; b < 2; b++) {
            int n = image_loader_next(&loader, images, labels);
            for (int i = 0; i < n; i++) if (labels[i] < 0 || labels[i] > 1) abort();
        }
        cJSON_Delete(state);
    }
    fuzz_fail_jump = NULL;
    return 0;
}
