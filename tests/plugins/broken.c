/*
 * The broken-plugin corpus: one method plugin, broken in one way per build
 * (tests/plugins.rs compiles it once per -DFAULT_...). Without a fault it is a
 * working method: each input's map is the input itself.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "unitscope.h"

#define STR(s) { (const uint8_t *)(s), sizeof(s) - 1 }

static inline void free_text(uint8_t *ptr, size_t len) {
    (void)len;
    free(ptr);
}

static inline int32_t fail(UsText *error, const char *message) {
    size_t len = strlen(message);
    error->ptr = malloc(len);
    memcpy(error->ptr, message, len);
    error->len = len;
    error->free = free_text;
    return US_ERROR;
}

static void free_floats(float *data, size_t len) {
    (void)len;
    free(data);
}

static inline int32_t attribute(const UsHost *host, const UsArg *args, size_t n_args,
                                const UsTensor *inputs, const UsTarget *targets, size_t n_targets,
                                UsTensor *maps, UsText *error) {
    (void)host;
    (void)args;
    (void)n_args;
    (void)targets;
    (void)n_targets;
#ifdef FAULT_ERROR
    return fail(error, "the corpus's error string");
#else
    (void)error;
#endif
    float *map = malloc(inputs->len * sizeof(float));
    memcpy(map, inputs->data, inputs->len * sizeof(float));
    *maps = *inputs;
    maps->data = map;
    maps->free = free_floats;
#ifdef FAULT_NAN
    map[inputs->len / 2] = NAN;
#endif
#ifdef FAULT_SHAPE
    maps->dims[2] = inputs->dims[3] + 1; /* and a length to match */
    maps->len = maps->dims[0] * maps->dims[1] * maps->dims[2] * maps->dims[3];
    maps->data = realloc(map, maps->len * sizeof(float));
#endif
#ifdef FAULT_LIE
    maps->len = inputs->len * 1000; /* a length its shape and buffer do not hold */
#endif
    return US_OK;
}

#ifdef FAULT_RESERVED
/* A parameter named like one of explain's own options. */
static const UsParam PARAMS[] = {{
    .name = STR("output"),
    .help = STR("clashes with --output"),
    .kind = US_PARAM_INTEGER,
    .integer_default = 1,
    .integer_min = 0,
    .integer_max = 2,
}};
#endif

static const UsMethod METHOD = {
    .size = sizeof(UsMethod),
    .citation = STR("the test corpus"),
#ifdef FAULT_RESERVED
    .params = PARAMS,
    .n_params = 1,
#else
    .params = NULL,
    .n_params = 0,
#endif
#ifdef FAULT_NO_ATTRIBUTE
    .attribute = NULL,
#else
    .attribute = attribute,
#endif
    .passes = NULL,
};

static const UsPlugin PLUGIN = {
    .size = sizeof(UsPlugin),
#ifdef FAULT_MAJOR
    .abi_major = US_ABI_MAJOR + 1,
#else
    .abi_major = US_ABI_MAJOR,
#endif
#ifdef FAULT_MINOR
    .abi_minor = US_ABI_MINOR + 1,
#else
    .abi_minor = US_ABI_MINOR,
#endif
    .kind = US_KIND_METHOD,
    .name = STR(NAME),
    .version = STR("0.0.1"),
    .about = STR("a broken plugin"),
    .method = &METHOD,
    .modality = NULL,
};

#ifdef FAULT_NO_ENTRY
const UsPlugin *unitscope_plugin_v0(uint32_t host_major, uint32_t host_minor, UsText *error) {
#else
const UsPlugin *unitscope_plugin_v1(uint32_t host_major, uint32_t host_minor, UsText *error) {
#endif
    (void)host_major;
    (void)host_minor;
#ifdef FAULT_REFUSE
    fail(error, "this machine has no frobnicator");
    return host_major ? NULL : &PLUGIN;
#else
    (void)error;
    return &PLUGIN;
#endif
}
