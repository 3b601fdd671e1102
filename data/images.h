// Image datasets for the ViT trainer: Fashion-MNIST read straight from
// Debian's gzip'd idx files, ImageNet-style image folders decoded with
// stb_image (data/image_folders.c, apart: the trainer links neither it nor
// stb_image), a binary shard format so training never decodes images twice
// (read whole, or streamed image by image so a shard of any size fits), and
// a batch loader that shuffles, augments (timm's RandomResizedCrop, flips,
// Mixup/CutMix) and normalises into float CHW.
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
#include "common/utils.h"

#define IMAGE_CLASS_NAME_LEN 64      // bytes per class name, NUL included
#define IMAGE_MAX_CHANNELS 3
#define IMAGE_MAX_SIDE 4096          // larger stored images are surely a mistake
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

// A set of images in memory (pixels), or a shard streamed from its file
// (image_set_open_shard: pixels NULL, each image read when a batch needs it).
typedef struct {
    int count, channels, height, width, num_classes;
    uint8_t *pixels;                              // [count][channels][height][width]; NULL when streamed
    int32_t *labels;                              // [count], each in [0, num_classes)
    char (*class_names)[IMAGE_CLASS_NAME_LEN];    // [num_classes]
    // a shard's header (image_set_read_shard_header and the readers below)
    int version;                                  // 1 or 2 (0: not from a shard)
    int has_stats;                                // version 2: the header holds the channel statistics
    float stats_mean[IMAGE_MAX_CHANNELS], stats_std[IMAGE_MAX_CHANNELS];
    // streamed: the open file and where image i's pixels are
    FILE *file;                                   // NULL when in memory
    uint64_t pixel_offset;                        // file offset of image 0
    uint32_t *image_crcs;                         // [count] version 2: CRC-32 of each image, checked on every read
    char path[1024];                              // for messages
} ImageSet;

// bytes of one image (C*H*W)
static inline size_t image_set_image_bytes(const ImageSet *s) {
    return (size_t)s->channels * (size_t)s->height * (size_t)s->width;
}
void image_set_free(ImageSet *set);
// What a set of these sizes holds resident, in bytes, from a header read
// alone (for the memory plan): in memory the pixels, labels and class names;
// streamed only the labels, the class names and the image CRCs.
size_t image_set_resident_bytes(const ImageSet *set, int streamed);

// dst = the images src[indices[0..n)] in that order, with src's classes
void image_set_subset(ImageSet *dst, const ImageSet *src, const int32_t *indices, int n);
// Stratified hold-out: from each class, round(fraction * its count) images
// (at most all but one), picked by a shuffle seeded with seed, go to val; the
// rest to train. Both keep src's order. fraction in (0, 1).
void image_set_split_holdout(const ImageSet *src, double fraction, uint64_t seed,
                             ImageSet *train, ImageSet *val);
// The same choice from the labels alone: in_val[i] = 1 for the held-out
// images (in_val [n]); returns how many.
int image_holdout_marks(const int32_t *labels, int n, int num_classes, double fraction, uint64_t seed,
                        uint8_t *in_val);

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
// Image folders (data/image_folders.c; prepare_images and the tests link it).
// Image folder root/<class>/<file>.png|jpg|jpeg|bmp (extension case ignored,
// other files and dot-files ignored). Classes are the subfolder names in
// natural order, as timm's ImageFolder sorts them (image_name_natural_cmp:
// class2 before class10), and so are the files of a class, so labels and image
// order are the same on every machine. Each image is converted to `channels` (1:
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

// timm's natural order of names (timm.data.readers.class_map's natural_key:
// re.split(r'(\d+)', name.lower()), digit runs compared as numbers): the
// names are split into alternating runs of non-digits and ASCII digits; text
// runs compare as lower-cased (ASCII) byte strings, digit runs by their value
// (007 = 7), a name whose runs are a prefix of the other's comes first. Names
// that are equal that way ("A" and "a", "1" and "01") are ordered by strcmp,
// so the order is total (timm keeps the file system's order for them).
// Non-ASCII bytes compare as bytes: UTF-8 byte order is code point order,
// Python's order, but Python would also lower-case and read non-ASCII digits.
int image_name_natural_cmp(const char *a, const char *b);

// An image folder listed but not decoded (what prepare_images streams into a
// shard): the classes in natural order and every image's path and label, in
// the order image_set_load_folder stores them.
typedef struct {
    int count, num_classes;
    char **paths;                                 // [count]
    int32_t *labels;                              // [count]
    char (*class_names)[IMAGE_CLASS_NAME_LEN];    // [num_classes]
} ImageFolderList;
void image_folder_list(ImageFolderList *list, const char *root);
void image_folder_list_free(ImageFolderList *list);
// Decode the images indices[0..n) of the list (converted and resized as
// above) into pixels [n][channels][height][width], in parallel; a bad image
// fails naming the first bad file in index order.
void image_folder_decode(const ImageFolderList *list, const int32_t *indices, int n, int channels,
                         int height, int width, ResizeMode mode, uint8_t *pixels);

// What data/image_folders.c shares with data/images.c: allocate the arrays of
// a set whose sizes are filled in (pixels, labels, class names); store class
// name k (a name too long fails, naming `where`).
void image_set_alloc(ImageSet *set);
void image_set_class_name(char (*names)[IMAGE_CLASS_NAME_LEN], int k, const char *name, const char *where);

// Resample one HWC uint8 image (src_w x src_h, C channels) to dst_w x dst_h
// HWC uint8 as described above. Exposed for tests and tools.
void image_resize_hwc(const uint8_t *src, int src_w, int src_h, int C,
                      uint8_t *dst, int dst_w, int dst_h, ResizeMode mode);

// ---------------------------------------------------------------------------
// Shard file, all integers little-endian. Version 2 (what this code writes):
//   bytes  0..7   magic "IMGSHARD"
//          8..11  uint32 version (2)
//         12..15  uint32 count       (>= 1)
//         16..19  uint32 height      (1..IMAGE_MAX_SIDE)
//         20..23  uint32 width       (1..IMAGE_MAX_SIDE)
//         24..27  uint32 channels    (1 or 3)
//         28..31  uint32 num_classes (>= 1)
//         32..35  uint32 CRC-32 (zlib's crc32) of the class names, the labels,
//                 the image CRCs, then header bytes 0..31 and 36..63
//         36..47  float32 mean[3] of pixel/255 per channel (unused channels 0),
//         48..59  float32 std[3]  as image_set_channel_stats computes them
//         60..63  zero
//   then  num_classes x 64 bytes: class names, NUL-terminated, zero-padded
//   then  count x int32: labels, each in [0, num_classes)
//   then  count x uint32: CRC-32 of each image's channels x height x width bytes
//   then  count x channels x height x width uint8: pixels, CHW per image
// Every byte is covered by a CRC: the header's covers everything but the
// pixels and is checked when the shard is opened, each image's when it is
// read, so a streamed shard is checked image by image as training reads it
// and start-up reads no pixels. The statistics in the header spare the
// trainer a pass over the pixels for its normalisation.
// Version 1 (still read): bytes 36..63 zero, no image CRCs, and the CRC-32 at
// 32..35 covers every byte after the header; a version-1 shard opened for
// streaming is read through once at start-up to check it (in 4 MiB pieces).
// The file size must be exactly the sum; the writers are atomic.
#define IMAGE_SHARD_MAGIC "IMGSHARD"
#define IMAGE_SHARD_VERSION 2
#define IMAGE_SHARD_HEADER_BYTES 64
void image_set_write_shard(const ImageSet *set, const char *path);
// The whole shard in memory, every CRC checked.
void image_set_read_shard(ImageSet *set, const char *path);
// Streamed: the labels, class names and image CRCs in memory, the file open;
// the loader reads each image with pread when a batch needs it.
void image_set_open_shard(ImageSet *set, const char *path);
// only the header, checked against the file's size: the sizes, no arrays
void image_set_read_shard_header(ImageSet *set, const char *path);
// Image i's pixels (C*H*W bytes) into dst: a pointer into the set in memory,
// or read from a streamed shard into dst and checked against its CRC.
// Returns NULL with a one-line message in err on a failed read or a CRC
// mismatch. Thread-safe (pread).
const uint8_t *image_set_image(const ImageSet *set, int i, uint8_t *dst, char *err, size_t errlen);

// Writing a shard image by image, in bounded memory (prepare_images streams
// an image folder of any size through it): open with the sizes, the class
// names and all labels; put the images in order, any number at a time; close
// writes the image CRCs and the header and renames the file into place.
typedef struct {
    AtomicFile af;
    int count, channels, height, width, num_classes, written;
    uint32_t *crcs;                              // [count]
    uint32_t meta_crc;                           // the CRC of names and labels so far
    uint64_t sum[IMAGE_MAX_CHANNELS], sqsum[IMAGE_MAX_CHANNELS]; // exact, for the statistics
} ImageShardWriter;
void image_shard_writer_open(ImageShardWriter *w, const char *path, int count, int channels, int height, int width,
                             int num_classes, const char (*class_names)[IMAGE_CLASS_NAME_LEN], const int32_t *labels);
void image_shard_writer_put(ImageShardWriter *w, const uint8_t *pixels, int n);
// *mean and *std (may be NULL) get the written images' per-channel statistics
void image_shard_writer_close(ImageShardWriter *w, double *mean, double *std);

// ---------------------------------------------------------------------------
// Per-channel mean and (population) standard deviation of pixel/255 over the
// whole set (a streamed shard is read through once, in bounded memory). The
// sums are exact 64-bit integers, so the result is the same for any thread
// count and equals what a version-2 shard's header stores.
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
// starts. A streamed shard is read in that order, one pread per image (random
// access: the shuffle is over the whole set, not within a window; an SSD or
// the page cache serve it, a spinning disk would seek per image).
//
// Augmentation per image, drawn from the loader's own Rng in batch order
// before any image is made (so the stream does not depend on threads):
//  - crop_pad K: a random crop after zero-padding K pixels on every side
//    (offsets uniform in [0, 2K] per axis), like torchvision's
//    RandomCrop(padding=K, fill=0) ahead of Normalize; needs the output size
//    to be the stored size.
//  - rrc: torchvision's RandomResizedCrop(scale, ratio) box (get_params, see
//    image_rrc_box) on the stored image, resampled to the output size by
//    image_resize_hwc's resampler (RESIZE_STRETCH on the box: area averaging
//    when shrinking, bilinear when growing) and rounded to uint8 like a PIL
//    image, then normalised.
//  - flip: a horizontal mirror with probability 1/2 (u < 0.5), after the crop.
//  - without either crop, and in evaluation, an image larger than the output
//    is centre-cropped to it (torchvision's CenterCrop: offset
//    round((stored - out) / 2), half to even), an equal one taken as is.
// Then, per batch, timm's Mixup (mode 'batch', correct_lam, no
// cutmix_minmax), drawn after the images' draws: with probability mix_prob,
// CutMix (with probability switch_prob when both alphas are set) or mixup,
// lam ~ Beta(alpha, alpha) (image_beta_sample); image b is mixed with image
// B-1-b (timm's x.flip(0)); see image_mix_batch. Mixup needs an even B.
// Targets (when the loader has soft targets: smoothing > 0 or Mixup on) are
// timm's mixup_target: rows of off = smoothing / K and on = 1 - smoothing +
// off at the label, mixed with the flipped batch's rows by lam.
//
// Evaluation mode (shuffle = 0): images in stored order, never augmented
// (crops and flip off, no soft targets). The last batch of a pass may be
// partial; the return value says how many images are valid, the rest of the
// batch is zero with label -1. After the last batch next() returns 0 once; the
// call after that starts a new pass.
//
// Output: images [B, C, out_height, out_width] float, (pixel/255 - mean[c]) /
// std[c]; labels [B]; targets [B, num_classes].
// The whole resumable state is (epoch, position in epoch, augmentation Rng):
// Mixup draws from the same Rng.
typedef struct {
    int64_t epoch;     // epochs (passes) started before the current one
    int64_t pos;       // images of the current epoch already handed out
    uint64_t rng_state;
} ImageLoaderState;

typedef struct {
    int B;
    uint64_t seed;
    int shuffle;                        // 1 training, 0 evaluation
    int out_height, out_width;          // size of the batch's images (0: the stored size)
    int crop_pad, flip;
    int rrc;                            // RandomResizedCrop
    double rrc_scale[2], rrc_ratio[2];  // default (0.08, 1), (3/4, 4/3)
    double smoothing;                   // label smoothing of the targets (0: none)
    double mixup_alpha, cutmix_alpha;   // 0: off
    double mix_prob, switch_prob;       // default 1, 0.5 (timm's)
    const float *mean, *std;            // one per channel, pixel scale 0..1
} ImageLoaderConfig;
void image_loader_config_defaults(ImageLoaderConfig *c);

// One image's draws: the window taken from the stored image (top y, left x,
// h x w; for crop_pad the offsets into the padded image and the output size)
// and the mirror.
typedef struct {
    int32_t y, x, h, w, flip;
} ImageAugDraw;

// One batch's Mixup draws (timm's names): lam after the box correction, and
// CutMix's box rows [yl, yh) x columns [xl, xh).
typedef struct {
    int mixed, cutmix;
    double lam;
    int yl, yh, xl, xh;
} ImageMixDraw;

// Per-thread work space of the loader (a streamed image, RandomResizedCrop's
// resampling), allocated once at init.
typedef struct {
    uint8_t *src;              // one stored image (streamed shards)
    float *tmp;                // [stored height][out width]: the horizontal pass
    uint8_t *resized;          // [out height][out width]: one resampled channel
    int *xfirst, *xtaps, *yfirst, *ytaps;
    float *xw, *yw;            // [out][max taps]
} ImageLoaderScratch;

typedef struct {
    const ImageSet *set;
    ImageLoaderConfig cfg;     // a copy (its mean and std are in lut, the pointers cleared)
    int B, out_height, out_width, soft;
    int64_t epoch, pos;
    int ended;                 // eval mode: the pass has been fully handed out
    Rng aug_rng;
    int32_t *order;            // [count] image indices of the current epoch
    int64_t order_epoch;       // epoch that order was made for
    ImageAugDraw *draws;       // [B] the last batch's
    ImageMixDraw mix;          // the last batch's
    int threads, xcap, ycap;   // scratch sets, taps each axis can hold
    ImageLoaderScratch *scratch; // [threads]
    float lut[IMAGE_MAX_CHANNELS][256]; // normalised value of each uint8, per channel
} ImageLoader;

void image_loader_init_config(ImageLoader *l, const ImageSet *set, const ImageLoaderConfig *c);
// the loader without RandomResizedCrop, Mixup or soft targets, at the stored size
void image_loader_init(ImageLoader *l, const ImageSet *set, int B, uint64_t seed, int shuffle,
                       int crop_pad, int flip, const float *mean, const float *std);
// fills images[B*C*out_h*out_w] and labels[B]; returns the number of valid
// images. A loader with soft targets needs image_loader_next_targets.
int image_loader_next(ImageLoader *l, float *images, int *labels);
// the same and targets [B][num_classes] (soft targets, or one-hot rows)
int image_loader_next_targets(ImageLoader *l, float *images, int *labels, float *targets);
// batches per epoch: count / B in training mode, ceil(count / B) in evaluation
int64_t image_loader_batches_per_epoch(const ImageLoader *l);
ImageLoaderState image_loader_get_state(const ImageLoader *l);
// fails if the state cannot belong to this loader (position beyond the set...)
void image_loader_set_state(ImageLoader *l, ImageLoaderState st);
// back to epoch 0, position 0, augmentation Rng freshly seeded
void image_loader_reset(ImageLoader *l);
void image_loader_free(ImageLoader *l);
// What image_loader_init_config allocates for a set of these sizes (a header
// read is enough), streamed or in memory, and this configuration with
// `threads` OpenMP threads, in bytes.
size_t image_loader_resident_bytes(const ImageSet *set, const ImageLoaderConfig *c, int streamed, int threads);

// The pieces, exposed for the tests and their Python references.
// torchvision's RandomResizedCrop.get_params on an H x W image, with r's
// draws for torch's: each of the 10 attempts takes u1, u2 = rng_uniform (the
// area fraction scale[0] + u1 (scale[1] - scale[0]) and the log aspect ratio
// log r0 + u2 (log r1 - log r0), each rounded to float32 as torch's uniform_
// on a float tensor gives it; the logs and the exp in float32 too), w and h
// rounded half to even (Python's round), and for a box that fits
// i = rng_below(H - h + 1), j = rng_below(W - w + 1) for torch.randint; after
// 10 misses the centre crop of the ratio-clamped whole image.
void image_rrc_box(Rng *r, int H, int W, const double scale[2], const double ratio[2], ImageAugDraw *box);
// Beta(alpha, alpha) from r (Marsaglia-Tsang gamma variates, X / (X + Y)).
double image_beta_sample(Rng *r, double alpha);
// timm's Mixup on a batch given its draws: images [B][C][H][W] in place,
// mixup x_b = lam x_b + (1 - lam) x_{B-1-b} (float32, lam rounded as PyTorch
// multiplies a float tensor by a Python float), CutMix the box of x_{B-1-b}
// pasted into x_b; targets [B][K] from labels as described above.
void image_mix_batch(float *images, int B, int C, int H, int W, const ImageMixDraw *d);
void image_mix_targets(float *targets, const int *labels, int B, int K, double smoothing, const ImageMixDraw *d);
// timm's rand_bbox + correct_lam for CutMix from lam and the centre (cy, cx):
// cut = int(side * sqrt(1 - lam)), rows clip(cy -+ cut_h // 2, 0, H), lam
// becomes 1 - box area / (H W).
void image_cutmix_box(int H, int W, double lam, int cy, int cx, ImageMixDraw *d);

#endif
