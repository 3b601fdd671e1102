// Image datasets for the ViT trainer: Fashion-MNIST read straight from
// Debian's gzip'd idx files, ImageNet-style image folders decoded with
// stb_image, a binary shard format so training never decodes images twice,
// and a batch loader that shuffles, augments and normalises into float CHW.
//
// Pixels are kept as uint8 in CHW order per image ([count][C][H][W]), the
// layout the patch embedding reads (each P x P patch flattened in (channel,
// row, col) order, like a PyTorch Conv2d weight). All errors go through
// fail(): one line naming the file or flag, exit status 1.
#ifndef DATA_IMAGES_H
#define DATA_IMAGES_H

#include <stdint.h>
#include <stddef.h>

#include "common/rng.h"

#define IMAGE_CLASS_NAME_LEN 64      // bytes per class name, NUL included
#define IMAGE_MAX_CHANNELS 3
#define IMAGE_MAX_SIDE 4096          // larger stored images are surely a mistake
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    int count, channels, height, width, num_classes;
    uint8_t *pixels;                              // [count][channels][height][width]
    int32_t *labels;                              // [count], each in [0, num_classes)
    char (*class_names)[IMAGE_CLASS_NAME_LEN];    // [num_classes]
} ImageSet;

// bytes of one image (C*H*W)
static inline size_t image_set_image_bytes(const ImageSet *s) {
    return (size_t)s->channels * (size_t)s->height * (size_t)s->width;
}
void image_set_free(ImageSet *set);
// What a loaded set of these sizes holds resident (pixels, labels, class
// names), in bytes: for the memory plan, from a header read alone.
size_t image_set_resident_bytes(const ImageSet *set);

// dst = the images src[indices[0..n)] in that order, with src's classes
void image_set_subset(ImageSet *dst, const ImageSet *src, const int32_t *indices, int n);
// Stratified hold-out: from each class, round(fraction * its count) images
// (at most all but one), picked by a shuffle seeded with seed, go to val; the
// rest to train. Both keep src's order. fraction in (0, 1).
void image_set_split_holdout(const ImageSet *src, double fraction, uint64_t seed,
                             ImageSet *train, ImageSet *val);

// ---------------------------------------------------------------------------
// idx files (the MNIST format: big-endian magic 2051 + count, rows, cols for
// images, magic 2049 + count for labels), gzip'd or plain: zlib reads both.
// Gives 1 channel, num_classes = number of names given.
void image_set_load_idx(ImageSet *set, const char *images_path, const char *labels_path,
                        const char *const *class_names, int num_classes);
// Fashion-MNIST from dir (FASHION_MNIST_DIR when NULL); split is "train"
// (60000 images) or "test" (the t10k files, 10000 images). 28x28, 1 channel.
void image_set_load_fashion_mnist(ImageSet *set, const char *dir, const char *split);
// Only the headers, checked as the load checks them: set gets count,
// channels, height, width and num_classes, and no arrays (pixels NULL).
void image_set_fashion_mnist_header(ImageSet *set, const char *dir, const char *split);
extern const char *const fashion_mnist_class_names[10];

// ---------------------------------------------------------------------------
// Image folder root/<class>/<file>.png|jpg|jpeg|bmp (extension case ignored,
// other files and dot-files ignored). Classes are the subfolder names in
// strcmp order, files are taken in strcmp order, so labels and image order
// are the same on every machine. Each image is converted to `channels` (1:
// stb_image's luminance, alpha dropped; 3: grey replicated) and resized to
// height x width:
//   RESIZE_CROP     scale so the image covers H x W keeping its aspect ratio,
//                   then take the centre (the shorter side fills the output;
//                   a window of whole pixels starts on a whole pixel, the
//                   odd leftover pixel is cut from the left/top)
//   RESIZE_STRETCH  scale each axis independently to fill H x W
// Resampling is separable per axis: area averaging when that axis shrinks
// (or keeps its size), bilinear with half-pixel centres and clamped edges
// (PyTorch's align_corners=False) when it grows. This is our own resampler,
// not stb_image_resize: newer libstb snapshots replace that header with
// stb_image_resize2, and ours is checked exactly by the tests. Decoding runs
// in parallel; the result does not depend on the thread count.
// Before decoding, each file's declared size is checked against limits (a
// tiny file can declare 25000 x 25000 pixels: a decompression bomb): at most
// IMAGE_DEFAULT_MAX_SIDE per side and IMAGE_DEFAULT_MAX_PIXELS in all, unless
// image_set_decode_limits (prepare_images --max-image-side/--max-image-pixels)
// says otherwise; a larger image fails naming the file.
typedef enum { RESIZE_CROP = 0, RESIZE_STRETCH = 1 } ResizeMode;
void image_set_load_folder(ImageSet *set, const char *root, int channels,
                           int height, int width, ResizeMode mode);
#define IMAGE_DEFAULT_MAX_SIDE 16384
#define IMAGE_DEFAULT_MAX_PIXELS (1LL << 28)
void image_set_decode_limits(int max_side, int64_t max_pixels);

// Resample one HWC uint8 image (src_w x src_h, C channels) to dst_w x dst_h
// HWC uint8 as described above. Exposed for tests and tools.
void image_resize_hwc(const uint8_t *src, int src_w, int src_h, int C,
                      uint8_t *dst, int dst_w, int dst_h, ResizeMode mode);

// ---------------------------------------------------------------------------
// Shard file, all integers little-endian:
//   bytes  0..7   magic "IMGSHARD"
//          8..11  uint32 version (1)
//         12..15  uint32 count       (>= 1)
//         16..19  uint32 height      (1..IMAGE_MAX_SIDE)
//         20..23  uint32 width       (1..IMAGE_MAX_SIDE)
//         24..27  uint32 channels    (1 or 3)
//         28..31  uint32 num_classes (>= 1)
//         32..35  uint32 CRC-32 (zlib's crc32) of every byte after the header
//         36..63  zero
//   then  num_classes x 64 bytes: class names, NUL-terminated, zero-padded
//   then  count x int32: labels, each in [0, num_classes)
//   then  count x channels x height x width uint8: pixels, CHW per image
// The file size must be exactly the sum; the writer is atomic.
#define IMAGE_SHARD_MAGIC "IMGSHARD"
#define IMAGE_SHARD_VERSION 1
#define IMAGE_SHARD_HEADER_BYTES 64
void image_set_write_shard(const ImageSet *set, const char *path);
void image_set_read_shard(ImageSet *set, const char *path);
// only the header, checked against the file's size: the sizes, no arrays
void image_set_read_shard_header(ImageSet *set, const char *path);

// ---------------------------------------------------------------------------
// Per-channel mean and (population) standard deviation of pixel/255 over the
// whole set. The sums are exact 64-bit integers, so the result is the same
// for any thread count.
void image_set_channel_stats(const ImageSet *set, double *mean, double *std);

// Parse "v" or "v1,v2,v3" (one value for all channels, or one per channel)
// into out[channels]; fails naming the flag on anything else. If positive is
// set, every value must be > 0 (for a std).
void parse_channel_values_or_fail(const char *text, int channels, const char *flag,
                                  int positive, float *out);

// ---------------------------------------------------------------------------
// Batch loader.
//
// Training mode (shuffle = 1): each epoch visits the images in a permutation
// made by a Fisher-Yates shuffle from rng_seed(mix(seed, epoch)), so the
// order of any epoch is a pure function of (seed, epoch). Batches are always
// full: the last count % B images of an epoch are skipped and the next epoch
// starts. Optional augmentation per image, drawn from the loader's own Rng:
// random crop after zero-padding crop_pad pixels on every side (offsets
// uniform in [0, 2*crop_pad] per axis), then a horizontal flip with
// probability 1/2. Padding is pixel value 0 before normalisation, like
// torchvision's RandomCrop(padding=k, fill=0) ahead of Normalize.
//
// Evaluation mode (shuffle = 0): images in stored order, never augmented
// (crop_pad and flip must be 0). The last batch of a pass may be partial; the
// return value says how many images are valid, the rest of the batch is zero
// with label -1. After the last batch next() returns 0 once; the call after
// that starts a new pass.
//
// Output: images [B, C, H, W] float, (pixel/255 - mean[c]) / std[c]; labels [B].
// The whole resumable state is (epoch, position in epoch, augmentation Rng).
typedef struct {
    int64_t epoch;     // epochs (passes) started before the current one
    int64_t pos;       // images of the current epoch already handed out
    uint64_t rng_state;
} ImageLoaderState;

typedef struct {
    const ImageSet *set;
    int B, shuffle, crop_pad, flip;
    uint64_t seed;
    int64_t epoch, pos;
    int ended;               // eval mode: the pass has been fully handed out
    Rng aug_rng;
    int32_t *order;          // [count] image indices of the current epoch
    int64_t order_epoch;     // epoch that order was made for
    int32_t *aug;            // [B][3] per-image draws: dy, dx, flip
    float lut[IMAGE_MAX_CHANNELS][256]; // normalised value of each uint8, per channel
} ImageLoader;

// mean/std: one value per channel of the set (pixel scale 0..1)
void image_loader_init(ImageLoader *l, const ImageSet *set, int B, uint64_t seed, int shuffle,
                       int crop_pad, int flip, const float *mean, const float *std);
// fills images[B*C*H*W] and labels[B]; returns the number of valid images
int image_loader_next(ImageLoader *l, float *images, int *labels);
// batches per epoch: count / B in training mode, ceil(count / B) in evaluation
int64_t image_loader_batches_per_epoch(const ImageLoader *l);
ImageLoaderState image_loader_get_state(const ImageLoader *l);
// fails if the state cannot belong to this loader (position beyond the set...)
void image_loader_set_state(ImageLoader *l, ImageLoaderState st);
// back to epoch 0, position 0, augmentation Rng freshly seeded
void image_loader_reset(ImageLoader *l);
void image_loader_free(ImageLoader *l);
// what a loader of a set of count images and batches of B allocates, in bytes
size_t image_loader_resident_bytes(int count, int B);

#endif
