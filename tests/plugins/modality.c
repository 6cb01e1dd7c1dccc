/*
 * A modality plugin for the tests, in C against the SDK's header: `.f32` files hold
 * the model's input itself (C x H x W little-endian float32), shown as a grey
 * picture with a spectrogram's axes. -DDRAW: it draws maps itself (red where the
 * map is high, blue where low, no green). -DCARD: it ships `rawinput.toml`.
 * -DTOKENS: it shows each column as a token (its letter) instead of a picture.
 * -DFAULT_...: broken one way (tests/plugins.rs builds one library per fault).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unitscope.h"

#define STR(s) { (const uint8_t *)(s), sizeof(s) - 1 }

static void free_text(uint8_t *ptr, size_t len) {
    (void)len;
    free(ptr);
}

static int32_t fail(UsText *error, const char *message) {
    size_t len = strlen(message);
    error->ptr = malloc(len);
    memcpy(error->ptr, message, len);
    error->len = len;
    error->free = free_text;
    return US_ERROR;
}

/* One decoded file: the input and its picture (or its tokens). */
typedef struct File {
    float *input;
    uint8_t *rgb;
    UsStr *tokens;
    uint64_t height, width;
} File;

static int32_t decode(UsStr path, uint64_t channels, uint64_t height, uint64_t width,
                      UsDecoded *out, UsText *error) {
    char name[4096];
    if (path.len >= sizeof name) return fail(error, "path too long");
    memcpy(name, path.ptr, path.len);
    name[path.len] = 0;
    FILE *f = fopen(name, "rb");
    if (!f) return fail(error, "cannot open the file");
    size_t n = channels * height * width;
    File *file = calloc(1, sizeof(File));
    file->input = malloc(n * sizeof(float));
    size_t got = fread(file->input, sizeof(float), n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        free(file->input);
        free(file);
        return fail(error, "not the model's input: the file holds the wrong number of floats");
    }
    /* The picture: each position's channel mean, scaled to its range. */
    float lo = INFINITY, hi = -INFINITY;
    float *mean = malloc(height * width * sizeof(float));
    for (size_t p = 0; p < height * width; p++) {
        float sum = 0;
        for (size_t c = 0; c < channels; c++) sum += file->input[c * height * width + p];
        mean[p] = sum / channels;
        lo = fminf(lo, mean[p]);
        hi = fmaxf(hi, mean[p]);
    }
    file->rgb = malloc(3 * height * width);
    for (size_t p = 0; p < height * width; p++) {
        uint8_t v = (uint8_t)lroundf(255.0f * (mean[p] - lo) / (hi - lo + 1e-12f));
        file->rgb[3 * p] = file->rgb[3 * p + 1] = file->rgb[3 * p + 2] = v;
    }
    free(mean);
    file->height = height;
    file->width = width;

    UsDecoded d = {0};
    d.size = sizeof(UsDecoded);
    d.handle = file;
    d.input.data = file->input;
    d.input.len = n;
    d.input.rank = 3;
    d.input.dims[0] = channels;
    d.input.dims[1] = height;
    d.input.dims[2] = width;
#ifdef FAULT_SHAPE
    d.input.dims[1] = height / 2;
    d.input.dims[2] = width * 2;
#endif
#ifdef FAULT_NAN
    file->input[n / 2] = NAN;
#endif
    d.display = US_DISPLAY_IMAGE;
#ifdef TOKENS
    static const char LETTERS[] = "abcdefghijklmnopqrstuvwxyz";
    file->tokens = malloc(width * sizeof(UsStr));
    for (size_t x = 0; x < width; x++) {
        file->tokens[x].ptr = (const uint8_t *)&LETTERS[x % 26];
        file->tokens[x].len = 1;
    }
    d.display = US_DISPLAY_TOKENS;
    d.tokens = file->tokens;
    d.n_tokens = width;
#endif
#ifdef FAULT_DISPLAY
    d.display = 7;
#endif
    d.rgb = file->rgb;
    d.width = width;
    d.height = height;
    d.x_label = (UsStr)STR("time");
    d.x_unit = (UsStr)STR("s");
    d.x_start = 0.0;
    d.x_end = 1.5;
    d.y_label = (UsStr)STR("frequency");
    d.y_unit = (UsStr)STR("Hz");
    d.y_start = 8000.0;
    d.y_end = 0.0;
    /* Filled no further than the host's size (a newer plugin, an older host). */
    size_t room = out->size < sizeof d ? out->size : sizeof d;
    memcpy(out, &d, room);
    out->size = (uint32_t)room;
    return US_OK;
}

static void release(void *handle) {
    File *file = handle;
    free(file->input);
    free(file->rgb);
    free(file->tokens);
    free(file);
}

#ifdef DRAW
static void free_floats(float *data, size_t len) {
    (void)len;
    free(data);
}

static int32_t draw(void *handle, const UsTensor *map, UsTensor *rgb, UsText *error) {
    File *file = handle;
    if (map->rank != 2 || map->dims[0] != file->height || map->dims[1] != file->width)
        return fail(error, "a map of another size than the picture");
    size_t n = file->height * file->width;
    float *out = malloc(3 * n * sizeof(float));
    for (size_t p = 0; p < n; p++) {
        out[3 * p] = map->data[p];
        out[3 * p + 1] = 0.0f;
        out[3 * p + 2] = 1.0f - map->data[p];
    }
    rgb->data = out;
    rgb->len = 3 * n;
    rgb->rank = 3;
    rgb->dims[0] = file->height;
    rgb->dims[1] = file->width;
    rgb->dims[2] = 3;
#ifdef FAULT_DRAW_SHAPE
    rgb->dims[0] = file->width;
    rgb->dims[1] = file->height * 3;
    rgb->dims[2] = 1;
#endif
    rgb->free = free_floats;
    return US_OK;
}
#endif

static const UsStr EXTENSIONS[] = {STR("f32")};

static const UsModality MODALITY = {
    .size = sizeof(UsModality),
    .extensions = EXTENSIONS,
    .n_extensions = 1,
#ifdef CARD
    .card = STR("rawinput.toml"),
#else
    .card = {NULL, 0},
#endif
    .decode = decode,
    .release = release,
#ifdef DRAW
    .draw = draw,
#else
    .draw = NULL,
#endif
};

static const UsPlugin PLUGIN = {
    .size = sizeof(UsPlugin),
    .abi_major = US_ABI_MAJOR,
    .abi_minor = US_ABI_MINOR,
    .kind = US_KIND_MODALITY,
    .name = STR("rawinput"),
    .version = STR("0.1.0"),
    .about = STR("the model's input as raw float32"),
    .method = NULL,
    .modality = &MODALITY,
};

const UsPlugin *unitscope_plugin_v1(uint32_t host_major, uint32_t host_minor, UsText *error) {
    (void)host_major;
    (void)host_minor;
    (void)error;
    return &PLUGIN;
}
