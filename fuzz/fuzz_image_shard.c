// libFuzzer harness: the image shard reader (data/images.c) and, for a shard
// it accepts, the statistics and a batch of the loader.
#include "data/images.h"
#include "fuzz/fuzz.h"

#include <string.h>

static ImageSet set;
static ImageLoader loader;
static float *images;
static int *labels;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_file(data, size);
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        image_set_read_shard(&set, path);
        double mean[IMAGE_MAX_CHANNELS], std[IMAGE_MAX_CHANNELS];
        image_set_channel_stats(&set, mean, std);
        float m[IMAGE_MAX_CHANNELS], s[IMAGE_MAX_CHANNELS];
        for (int c = 0; c < set.channels; c++) { m[c] = 0.5f; s[c] = 0.25f; }
        int B = set.count < 2 ? set.count : 2;
        image_loader_init(&loader, &set, B, 1, 1, 1, 1, m, s);
        images = malloc_or_fail((size_t)B * image_set_image_bytes(&set) * sizeof(float), "images");
        labels = malloc_or_fail((size_t)B * sizeof(int), "labels");
        image_loader_next(&loader, images, labels);
    }
    fuzz_fail_jump = NULL;
    free(images);
    free(labels);
    images = NULL;
    labels = NULL;
    if (loader.order) image_loader_free(&loader);
    memset(&loader, 0, sizeof(loader));
    if (set.pixels || set.labels || set.class_names) image_set_free(&set);
    memset(&set, 0, sizeof(set));
    return 0;
}
