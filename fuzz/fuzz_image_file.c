// libFuzzer harness: one image file of an image folder (BMP, PNG, JPEG, or
// anything stb_image reads; data/image_folders.c, image_folder_decode): the declared
// size is checked against the limits, then the image is decoded, converted
// (3 channels, then 1) and resized (crop, then stretch). The limits are set
// low (1024 per side, 2^20 pixels, as --max-image-side/--max-image-pixels
// would) so that an input within them decodes in milliseconds.
#include "data/images.h"
#include "fuzz/fuzz.h"

#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    image_set_decode_limits(1024, 1 << 20);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *file = fuzz_input_file(data, size);
    char path[128];
    snprintf(path, sizeof(path), "%s", file);
    char *paths[1] = {path};
    int32_t labels[1] = {0}, index[1] = {0};
    char class_names[1][IMAGE_CLASS_NAME_LEN] = {"c"};
    ImageFolderList list = {1, 1, paths, labels, class_names};
    static uint8_t rgb[3 * 12 * 16], grey[1 * 9 * 7];
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        image_folder_decode(&list, index, 1, 3, 12, 16, RESIZE_CROP, rgb);
        image_folder_decode(&list, index, 1, 1, 9, 7, RESIZE_STRETCH, grey);
    }
    fuzz_fail_jump = NULL;
    return 0;
}
