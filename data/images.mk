# Image data for the ViT trainer: datasets, shards, batch loader, and the
# prepare_images tool. A binary that links data/images.o needs IMAGES_LIBS
# too (stb_image comes from Debian's libstb-dev as a library, -lstb; JPEGs are
# decoded by libjpeg-turbo, -ljpeg).
IMAGES_OBJS := $(BUILD)/data/images.o $(COMMON_OBJS)
IMAGES_LIBS := -lstb -ljpeg

prepare_images: $(BUILD)/data/prepare_images.o $(IMAGES_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(IMAGES_LIBS)

test_images: $(BUILD)/test_images.o $(IMAGES_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(IMAGES_LIBS)

# Fashion-MNIST as shards: data/fmnist/train.bin (60000) and val.bin (the
# 10000 t10k images); about 0.3 s.
.PHONY: data-fmnist
data-fmnist: data/fmnist/train.bin
data/fmnist/train.bin: prepare_images | setup
	./prepare_images --fashion-mnist --out data/fmnist

# the test also runs the tool, so it needs both
.PHONY: run-test-images
run-test-images: test_images prepare_images
	./test_images

TESTS += run-test-images
BINS += prepare_images test_images

# rewrite the augmentation references of test_images (torchvision's
# RandomResizedCrop on the project's RNG, timm's Mixup): needs Debian's
# python3-torchvision
.PHONY: aug-ref
aug-ref:
	$(PYTHON) dev/aug_ref.py
