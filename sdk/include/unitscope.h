/*
 * unitscope.h: the unitscope plugin ABI, version 1.2, for plugins written in C or C++.
 *
 * The same types as the Rust SDK's `unitscope_sdk::abi` (a test compiles this header
 * against them, field by field). Read sdk/README.md for the rules; in short:
 *   - a plugin exports one function, `unitscope_plugin_v1` (UsEntry), returning a
 *     static UsPlugin;
 *   - text is UTF-8 with a length (UsStr borrowed, UsText owned), never NUL-terminated;
 *   - whatever is handed over for keeps carries its allocator's free function;
 *   - the structs that begin with `size` only ever grow at the end; one the caller
 *     passes to be filled (UsModelInfo, UsLayerInfo, UsDecoded, UsSample) has its `size` set
 *     by the caller, and the callee writes no more than that;
 *   - a callback returns US_OK, US_ERROR with its `error` filled, or US_CANCELLED;
 *   - a method's entries may be called from several threads at once.
 */
#ifndef UNITSCOPE_H
#define UNITSCOPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define US_ABI_MAJOR 1
#define US_ABI_MINOR 2
#define US_MAX_RANK 8

#define US_OK 0
#define US_ERROR 1
#define US_CANCELLED 2

#define US_KIND_METHOD 1
#define US_KIND_MODALITY 2

#define US_PARAM_INTEGER 1
#define US_PARAM_REAL 2
#define US_PARAM_CHOICE 3
#define US_PARAM_FLAG 4
#define US_PARAM_TEXT 5
#define US_PARAM_LAYERS 6

#define US_TARGET_CLASS 1
#define US_TARGET_UNIT 2
#define US_TARGET_WEIGHTED 3

#define US_RULE_GRADIENT 0
#define US_RULE_GUIDED_BACKPROP 1
#define US_RULE_DECONVNET 2

#define US_DISPLAY_IMAGE 1
#define US_DISPLAY_TOKENS 2

/* Borrowed UTF-8 text. */
typedef struct UsStr {
    const uint8_t *ptr;
    size_t len;
} UsStr;

/* Owned UTF-8 text (an error message), freed by `free` (NULL: nothing to free). */
typedef struct UsText {
    uint8_t *ptr;
    size_t len;
    void (*free)(uint8_t *ptr, size_t len);
} UsText;

/* A dense float32 array, row-major; `free` is set when handed over for keeps. */
typedef struct UsTensor {
    float *data;
    size_t len;
    uint32_t rank;
    uint64_t dims[US_MAX_RANK];
    void (*free)(float *data, size_t len);
} UsTensor;

typedef struct UsChoice {
    UsStr name;
    UsStr help;
} UsChoice;

/* A parameter a method declares; it becomes the option --NAME. */
typedef struct UsParam {
    UsStr name;
    UsStr help;
    uint32_t kind;
    uint64_t integer_default;
    uint64_t integer_min;
    uint64_t integer_max;
    double real_default;
    double real_min;
    double real_max;
    UsStr text_default;
    const UsChoice *choices;
    size_t n_choices;
} UsParam;

/* A parameter's value in one call. */
typedef struct UsArg {
    UsStr name;
    uint32_t kind;
    uint64_t integer;
    double real;
    uint8_t flag;
    UsStr text;
    const UsStr *layers;
    size_t n_layers;
} UsArg;

/* What one input's map explains. */
typedef struct UsTarget {
    uint32_t kind;
    uint64_t class_index;
    UsStr layer;
    uint64_t channel;
    uint8_t has_position;
    uint64_t y;
    uint64_t x;
    const float *weights;
    size_t n_weights;
} UsTarget;

typedef struct UsPasses {
    uint64_t backward;
    uint64_t forward;
} UsPasses;

typedef struct UsModelInfo {
    uint32_t size;
    UsStr name;
    uint64_t channels;
    uint64_t height;
    uint64_t width;
    uint64_t classes;
    uint64_t layers;
} UsModelInfo;

typedef struct UsLayerInfo {
    uint32_t size;
    UsStr name;
    UsStr kind;
    uint32_t rank;
    uint64_t dims[US_MAX_RANK];
} UsLayerInfo;

/* The host: the model and its one engine. Call from the thread that called you. */
typedef struct UsHost {
    uint32_t size;
    uint32_t abi_minor;
    void *ctx;
    int32_t (*model)(void *ctx, UsModelInfo *out, UsText *error);
    int32_t (*layer)(void *ctx, uint64_t index, UsLayerInfo *out, UsText *error);
    int32_t (*forward)(void *ctx, const UsTensor *inputs, const UsStr *layers, size_t n_layers,
                       UsTensor *logits, UsTensor *recorded, UsText *error);
    int32_t (*gradient)(void *ctx, const UsTensor *inputs, const UsTarget *targets,
                        size_t n_targets, uint32_t rule, const UsStr *layers, size_t n_layers,
                        UsTensor *input_gradient, UsTensor *layer_gradients, UsText *error);
    int32_t (*cancelled)(void *ctx);
} UsHost;

/* An attribution method. `attribute` is required; `passes` may be NULL (one backward
 * pass per input). */
typedef struct UsMethod {
    uint32_t size;
    UsStr citation;
    const UsParam *params;
    size_t n_params;
    int32_t (*attribute)(const UsHost *host, const UsArg *args, size_t n_args,
                         const UsTensor *inputs, const UsTarget *targets, size_t n_targets,
                         UsTensor *maps, UsText *error);
    int32_t (*passes)(const UsArg *args, size_t n_args, uint64_t height, uint64_t width,
                      UsPasses *out, UsText *error);
} UsMethod;

/* A decoded file; everything it points to lives until UsModality.release(handle). */
typedef struct UsDecoded {
    uint32_t size;
    void *handle;
    UsTensor input;
    uint32_t display;
    const uint8_t *rgb;
    uint64_t width;
    uint64_t height;
    UsStr x_label;
    UsStr x_unit;
    double x_start;
    double x_end;
    UsStr y_label;
    UsStr y_unit;
    double y_start;
    double y_end;
    const UsStr *tokens;
    size_t n_tokens;
} UsDecoded;

/* One sample of a world, handed over: its tensors carry their `free`. `tracks`
 * (ABI 1.2): `n_tracks x height x width` finite values, empty for no tracks. */
typedef struct UsSample {
    uint32_t size;
    UsTensor input;
    uint64_t class_index;
    UsTensor masks;
    UsTensor tracks;
} UsSample;

/* A modality's world (ABI 1.1): samples made on demand whose class and concepts are
 * known position by position; static. `sample` is required: sample `index` of the
 * world of `seed` into `out` (whose `size` the host set: fill no more), its input
 * `channels x height x width`, its masks `n_concepts x height x width` of 0 or 1;
 * the same arguments give the same sample, on any thread. Indices from `held_out`
 * on are never trained on. `tracks` (ABI 1.2): the names of real-valued quantities
 * known at every position (n_tracks may be 0). */
typedef struct UsWorld {
    uint32_t size;
    const UsStr *classes;
    size_t n_classes;
    const UsStr *concepts;
    const UsStr *categories;
    size_t n_concepts;
    uint64_t held_out;
    int32_t (*sample)(uint64_t seed, uint64_t index, uint64_t channels, uint64_t height,
                      uint64_t width, UsSample *out, UsText *error);
    const UsStr *tracks;
    size_t n_tracks;
} UsWorld;

/* A modality. `decode` and `release` are required; `draw` may be NULL (the host draws
 * its heatmap over the picture); `world` (ABI 1.1) may be NULL.
 * - decode: the file at `path` into `out` (whose `size` the host set: fill no more),
 *   its input `channels x height x width`; an error is the file's, and the plugin
 *   stays enabled.
 * - draw: `map` (`[H, W]` over the input's positions, values in 0..1; a signed map as
 *   (1 + v) / 2) onto the file's picture, into `rgb` (`[height, width, 3]` floats in
 *   0..1 at the picture's size, handed over with its `free`); one call at a time per
 *   handle. */
typedef struct UsModality {
    uint32_t size;
    const UsStr *extensions;
    size_t n_extensions;
    UsStr card;
    int32_t (*decode)(UsStr path, uint64_t channels, uint64_t height, uint64_t width,
                      UsDecoded *out, UsText *error);
    void (*release)(void *handle);
    int32_t (*draw)(void *handle, const UsTensor *map, UsTensor *rgb, UsText *error);
    const UsWorld *world;
} UsModality;

/* What a plugin is: static for the life of the process. */
typedef struct UsPlugin {
    uint32_t size;
    uint32_t abi_major;
    uint32_t abi_minor;
    uint32_t kind;
    UsStr name;
    UsStr version;
    UsStr about;
    const UsMethod *method;
    const UsModality *modality;
} UsPlugin;

/* The entry's type. The host passes its ABI version; the plugin returns its static
 * description, or NULL with `error` filled when it cannot run here. */
typedef const UsPlugin *(*UsEntry)(uint32_t host_major, uint32_t host_minor, UsText *error);

/* The one symbol a plugin exports (define it in your plugin). */
const UsPlugin *unitscope_plugin_v1(uint32_t host_major, uint32_t host_minor, UsText *error);

#ifdef __cplusplus
}
#endif

#endif /* UNITSCOPE_H */
