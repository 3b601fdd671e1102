# Image data for the ViT trainer: datasets, shards, batch loader (what the
# trainer links, data/images.o), image folders decoded with stb_image (what
# only prepare_images and the tests link, data/image_folders.o: stb_image is
# compiled into it from Debian's header; JPEGs are decoded by libjpeg-turbo,
# -ljpeg), and the prepare_images tool.
IMAGES_OBJS := $(BUILD)/data/images.o $(COMMON_OBJS)
IMAGE_FOLDER_OBJS := $(BUILD)/data/image_folders.o $(IMAGES_OBJS)

prepare_images: $(BUILD)/data/prepare_images.o $(IMAGE_FOLDER_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS) -ljpeg

# the test writes its images with stb_image_write, from Debian's libstb (-lstb)
test_images: $(BUILD)/test_images.o $(IMAGE_FOLDER_OBJS)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS) -lstb -ljpeg

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
