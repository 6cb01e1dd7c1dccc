/*
 * A method plugin in C: the input times its gradient (Shrikumar et al. 2016),
 * written against sdk/include/unitscope.h alone. Build it with
 *
 *     cc -shared -fPIC -O2 -I sdk/include -o libinput_x_gradient.so \
 *         plugins/c-example/input_x_gradient.c
 *
 * and load it with `unitscope --plugin libinput_x_gradient.so ...`, or put it in
 * $XDG_DATA_HOME/unitscope/plugins.
 */
#include <stdlib.h>
#include <string.h>

#include "unitscope.h"

#define STR(s) { (const uint8_t *)(s), sizeof(s) - 1 }

/* Errors are handed to the host with this free function. */
static void free_text(uint8_t *ptr, size_t len) {
    (void)len;
    free(ptr);
}

static int32_t fail(UsText *error, const char *message) {
    size_t len = strlen(message);
    error->ptr = malloc(len);
    if (error->ptr) {
        memcpy(error->ptr, message, len);
        error->len = len;
        error->free = free_text;
    }
    return US_ERROR;
}

static void free_floats(float *data, size_t len) {
    (void)len;
    free(data);
}

static int32_t attribute(const UsHost *host, const UsArg *args, size_t n_args,
                         const UsTensor *inputs, const UsTarget *targets, size_t n_targets,
                         UsTensor *maps, UsText *error) {
    (void)args;
    (void)n_args;
    UsTensor gradient = {0};
    int32_t status = host->gradient(host->ctx, inputs, targets, n_targets, US_RULE_GRADIENT,
                                    NULL, 0, &gradient, NULL, error);
    if (status != US_OK) {
        return status; /* the host's error text passes on to the host */
    }
    if (gradient.len != inputs->len) {
        gradient.free(gradient.data, gradient.len);
        return fail(error, "the host's gradient is not the input's size");
    }
    float *map = malloc(inputs->len * sizeof(float));
    if (!map) {
        gradient.free(gradient.data, gradient.len);
        return fail(error, "out of memory");
    }
    for (size_t i = 0; i < inputs->len; i++) {
        map[i] = gradient.data[i] * inputs->data[i];
    }
    /* Free the host's buffer with the host's function. */
    gradient.free(gradient.data, gradient.len);
    *maps = *inputs;
    maps->data = map;
    maps->free = free_floats;
    return US_OK;
}

static const UsMethod METHOD = {
    .size = sizeof(UsMethod),
    .citation = STR("Shrikumar et al. 2016"),
    .params = NULL,
    .n_params = 0,
    .attribute = attribute,
    .passes = NULL, /* one backward pass per input */
};

static const UsPlugin PLUGIN = {
    .size = sizeof(UsPlugin),
    .abi_major = US_ABI_MAJOR,
    .abi_minor = US_ABI_MINOR,
    .kind = US_KIND_METHOD,
    .name = STR("c-input-x-gradient"),
    .version = STR("0.1.0"),
    .about = STR("the input times its gradient (a plugin written in C)"),
    .method = &METHOD,
    .modality = NULL,
};

const UsPlugin *unitscope_plugin_v1(uint32_t host_major, uint32_t host_minor, UsText *error) {
    (void)host_minor;
    if (host_major != US_ABI_MAJOR) {
        fail(error, "built for plugin ABI 1");
        return NULL;
    }
    return &PLUGIN;
}
