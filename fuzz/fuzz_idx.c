// libFuzzer harness: an idx image file and its idx label file (Fashion-MNIST's
// format, gzip'd or plain; data/images.c, image_set_load_idx). The input is
// both files (fuzz_split2). A set that loads must have in-range labels, and
// its statistics read every pixel.
#include "data/images.h"
#include "fuzz/fuzz.h"

#include <string.h>

static ImageSet set;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *img, *lab;
    size_t nimg, nlab;
    fuzz_split2(data, size, &img, &nimg, &lab, &nlab);
    char images[128], labels[128];
    fuzz_write_file(images, sizeof(images), "images-idx3-ubyte", img, nimg);
    fuzz_write_file(labels, sizeof(labels), "labels-idx1-ubyte", lab, nlab);
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        image_set_load_idx(&set, images, labels, fashion_mnist_class_names, 10);
        for (int i = 0; i < set.count; i++) if (set.labels[i] < 0 || set.labels[i] >= 10) abort();
        double mean[IMAGE_MAX_CHANNELS], std[IMAGE_MAX_CHANNELS];
        image_set_channel_stats(&set, mean, std);
    }
    fuzz_fail_jump = NULL;
    if (set.pixels || set.labels || set.class_names) image_set_free(&set);
    memset(&set, 0, sizeof(set));
    return 0;
}
