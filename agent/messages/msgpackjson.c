/* msgpack publish bodies -> each `data` as the JSON text the general path stores for it.
 *
 * The C twin of msgpackjson.py, built by `python -m agent.native.build` and loaded in its
 * place with the rest of a matching build (see agent/native). `data_texts(body, limit)` takes
 * a body that is `{"data": value}` or an array of 1..limit of them and returns each value as
 * JSON text (msgspec.Raw): what orjson writes for the Python value msgspec decodes, with the
 * characters Go's encoder escapes (<, >, &, U+2028, U+2029) escaped as message.go_escape
 * escapes them, so the texts need no escaping scan later. None ("not handled") for anything
 * outside a conservative subset; the codec's typed route then runs unchanged and words any
 * error:
 *   handled   nil, bool, every int width, finite float32/64 whose shortest repr is a form
 *             orjson shares, str (valid UTF-8), arrays, maps with distinct str keys
 *   declined  bin, ext (timestamps too), non-str or repeated map keys, NaN and infinities,
 *             invalid UTF-8 (surrogates included), nesting deeper than MAX_DEPTH, a map of
 *             more than MAX_MAP_KEYS keys, truncated input, bytes after the value, an
 *             envelope with another key
 * Every read is bounds-checked; nesting is a fixed stack, not recursion.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_MAP_KEYS 64 /* keys compared pairwise for repeats; a larger map is declined */
#define MAX_OPEN_KEYS 512

typedef struct {
    const uint8_t *at;
    const uint8_t *end;
} Reader;

typedef struct {
    char *buf;
    size_t len;
    size_t cap;
} Out;

typedef struct {
    const uint8_t *text;
    uint32_t len;
} Key;

typedef struct {
    uint32_t remaining; /* items (arrays) or pairs (maps) not yet written */
    uint32_t first_key; /* index in the key stack of this map's first key */
    int is_map;
} Frame;

typedef struct {
    Frame frames[MAX_DEPTH];
    int depth;
    Key keys[MAX_OPEN_KEYS];
    uint32_t key_count;
} State;

/* Returned by the readers: OK, or DECLINE (not handled: the general path decides). An
 * allocation failure sets a Python error and returns FAILED. */
enum { OK = 0, DECLINE = 1, FAILED = 2 };

static PyTypeObject *raw_type; /* msgspec.Raw */

/* -- output ----------------------------------------------------------------------------- */

static int reserve(Out *out, size_t more) {
    if (out->cap - out->len >= more) {
        return OK;
    }
    size_t cap = out->cap ? out->cap : 256;
    while (cap - out->len < more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return FAILED;
        }
        cap *= 2;
    }
    char *grown = PyMem_Realloc(out->buf, cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    out->buf = grown;
    out->cap = cap;
    return OK;
}

static int put(Out *out, const char *text, size_t len) {
    if (reserve(out, len) != OK) {
        return FAILED;
    }
    memcpy(out->buf + out->len, text, len);
    out->len += len;
    return OK;
}

/* -- reading ---------------------------------------------------------------------------- */

static inline int take(Reader *in, size_t count, const uint8_t **bytes) {
    if ((size_t)(in->end - in->at) < count) {
        return DECLINE; /* truncated */
    }
    *bytes = in->at;
    in->at += count;
    return OK;
}

static inline uint64_t big_endian(const uint8_t *bytes, int count) {
    uint64_t value = 0;
    for (int i = 0; i < count; i++) {
        value = (value << 8) | bytes[i];
    }
    return value;
}

/* The length that follows a type byte in `width` bytes. */
static int length(Reader *in, int width, uint32_t *len) {
    const uint8_t *bytes;
    if (take(in, (size_t)width, &bytes) != OK) {
        return DECLINE;
    }
    *len = (uint32_t)big_endian(bytes, width);
    return OK;
}

/* A str's bytes, or DECLINE for any other type. */
static int read_str(Reader *in, const uint8_t **text, uint32_t *len) {
    const uint8_t *lead;
    if (take(in, 1, &lead) != OK) {
        return DECLINE;
    }
    uint8_t kind = *lead;
    int rc = OK;
    if ((kind & 0xe0) == 0xa0) {
        *len = kind & 0x1f;
    } else if (kind == 0xd9) {
        rc = length(in, 1, len);
    } else if (kind == 0xda) {
        rc = length(in, 2, len);
    } else if (kind == 0xdb) {
        rc = length(in, 4, len);
    } else {
        return DECLINE;
    }
    if (rc != OK) {
        return rc;
    }
    return take(in, *len, text);
}

/* -- strings ---------------------------------------------------------------------------- */

/* What a byte below 0x80 becomes: 0 as is, 'u' as \u00XX (orjson's control characters and
 * Go's <, > and &), else \<that letter>. */
static char ascii_escape[128];

static void init_escapes(void) {
    for (int c = 0; c < 0x20; c++) {
        ascii_escape[c] = 'u';
    }
    ascii_escape['\b'] = 'b';
    ascii_escape['\t'] = 't';
    ascii_escape['\n'] = 'n';
    ascii_escape['\f'] = 'f';
    ascii_escape['\r'] = 'r';
    ascii_escape['"'] = '"';
    ascii_escape['\\'] = '\\';
    ascii_escape['<'] = 'u';
    ascii_escape['>'] = 'u';
    ascii_escape['&'] = 'u';
}

/* The length of the valid UTF-8 sequence at text[0] (a byte >= 0x80), or 0 if it is not one:
 * overlong forms, surrogates (U+D800-DFFF) and code points past U+10FFFF are refused, as
 * Python's strict decoder refuses them. */
static size_t utf8_sequence(const uint8_t *text, size_t left) {
    uint8_t lead = text[0];
    size_t count;
    uint8_t low = 0x80, high = 0xbf; /* the second byte's range */
    if (lead >= 0xc2 && lead <= 0xdf) {
        count = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        count = 3;
        if (lead == 0xe0) {
            low = 0xa0;
        } else if (lead == 0xed) {
            high = 0x9f;
        }
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        count = 4;
        if (lead == 0xf0) {
            low = 0x90;
        } else if (lead == 0xf4) {
            high = 0x8f;
        }
    } else {
        return 0;
    }
    if (left < count || text[1] < low || text[1] > high) {
        return 0;
    }
    for (size_t i = 2; i < count; i++) {
        if ((text[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    return count;
}

static int write_string(Out *out, const uint8_t *text, uint32_t len) {
    /* Each byte becomes at most six ("\u001f"), plus the quotes. */
    if (reserve(out, (size_t)len * 6 + 2) != OK) {
        return FAILED;
    }
    char *to = out->buf + out->len;
    *to++ = '"';
    size_t i = 0;
    while (i < len) {
        uint8_t c = text[i];
        if (c < 0x80) {
            char escape = ascii_escape[c];
            if (escape == 0) {
                *to++ = (char)c;
            } else if (escape == 'u') {
                static const char hex[] = "0123456789abcdef";
                memcpy(to, "\\u00", 4);
                to[4] = hex[c >> 4];
                to[5] = hex[c & 0xf];
                to += 6;
            } else {
                to[0] = '\\';
                to[1] = escape;
                to += 2;
            }
            i++;
            continue;
        }
        size_t count = utf8_sequence(text + i, len - i);
        if (count == 0) {
            return DECLINE;
        }
        if (c == 0xe2 && text[i + 1] == 0x80 && (text[i + 2] & 0xfe) == 0xa8) {
            memcpy(to, text[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6); /* as Go writes them */
            to += 6;
            i += 3;
            continue;
        }
        memcpy(to, text + i, count);
        to += count;
        i += count;
    }
    *to++ = '"';
    out->len = (size_t)(to - out->buf);
    return OK;
}

/* -- numbers ---------------------------------------------------------------------------- */

static int write_unsigned(Out *out, uint64_t value, int negative) {
    char digits[24];
    int at = (int)sizeof(digits);
    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    if (negative) {
        digits[--at] = '-';
    }
    return put(out, digits + at, sizeof(digits) - (size_t)at);
}

static int write_signed(Out *out, int64_t value) {
    if (value >= 0) {
        return write_unsigned(out, (uint64_t)value, 0);
    }
    return write_unsigned(out, (uint64_t)0 - (uint64_t)value, 1);
}

/* A double's shortest decimal when it has at most MAX_DECIMALS decimals, written as repr
 * writes it (and orjson: both print the shortest text that reads back as the same double);
 * DECLINE when it has more. The candidate with k decimals is x * 10^k rounded; it reads back
 * as x exactly when the correctly rounded N / 10^k is x. Below 2^40 a double's neighbours are
 * closer than 10^-MAX_DECIMALS, so at most one k-decimal reads back as x and the first k that
 * has one gives the text with the fewest digits, the one repr prints. */
#define MAX_DECIMALS 3
#define SHORT_LIMIT 1099511627776.0 /* 2^40 */

static int write_short_double(Out *out, double value) {
    static const double scale[MAX_DECIMALS + 1] = {1.0, 10.0, 100.0, 1000.0};
    static const uint64_t whole[MAX_DECIMALS + 1] = {1, 10, 100, 1000};
    double size = fabs(value);
    if (!(size < SHORT_LIMIT)) {
        return DECLINE;
    }
    for (int decimals = 0; decimals <= MAX_DECIMALS; decimals++) {
        double scaled = nearbyint(size * scale[decimals]);
        if (scaled / scale[decimals] != size) {
            continue;
        }
        uint64_t digits = (uint64_t)scaled;
        char text[40];
        int at = (int)sizeof(text);
        uint64_t fraction = digits % whole[decimals];
        if (decimals == 0) {
            text[--at] = '0';
        }
        for (int i = 0; i < decimals; i++) {
            text[--at] = (char)('0' + fraction % 10);
            fraction /= 10;
        }
        text[--at] = '.';
        uint64_t integer = digits / whole[decimals];
        do {
            text[--at] = (char)('0' + integer % 10);
            integer /= 10;
        } while (integer);
        if (signbit(value)) {
            text[--at] = '-';
        }
        return put(out, text + at, sizeof(text) - (size_t)at);
    }
    return DECLINE;
}

/* Python's repr (the shortest text that reads back as the same double, as orjson also finds)
 * in orjson's spelling: the same below 1e16 down to 1e-4 and from 1e16 up (e+NN); below, repr
 * pads the exponent to two digits where orjson does not (1e-07 against 1e-7), and for 1e-5
 * to 1e-4 orjson writes 0.0000NN. That range is declined; NaN and infinities too (the general
 * path refuses them with the entry's index). */
static int write_double(Out *out, double value) {
    if (!isfinite(value)) {
        return DECLINE;
    }
    int rc = write_short_double(out, value);
    if (rc != DECLINE) {
        return rc;
    }
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        return FAILED;
    }
    size_t len = strlen(text);
    rc = OK;
    char *exponent = strchr(text, 'e');
    if (exponent != NULL && exponent[1] == '-') {
        char *digits = exponent + 2;
        if (digits[0] == '0' && digits[1] == '5' && digits[2] == '\0') {
            rc = DECLINE;
        } else if (digits[0] == '0') {
            memmove(digits, digits + 1, strlen(digits)); /* with the terminator */
            len--;
        }
    }
    if (rc == OK) {
        rc = put(out, text, len);
    }
    PyMem_Free(text);
    return rc;
}

/* -- values ----------------------------------------------------------------------------- */

/* A map's next key (a str, distinct from the map's earlier keys) and the colon after it. */
static int write_key(Reader *in, Out *out, State *state) {
    const uint8_t *text;
    uint32_t len;
    if (read_str(in, &text, &len) != OK) {
        return DECLINE;
    }
    uint32_t first = state->frames[state->depth - 1].first_key;
    if (state->key_count >= MAX_OPEN_KEYS) {
        return DECLINE;
    }
    for (uint32_t i = first; i < state->key_count; i++) {
        const Key *seen = &state->keys[i];
        if (seen->len == len && memcmp(seen->text, text, len) == 0) {
            return DECLINE; /* msgspec keeps the last value, at the first one's place */
        }
    }
    state->keys[state->key_count].text = text;
    state->keys[state->key_count].len = len;
    state->key_count++;
    int rc = write_string(out, text, len);
    return rc == OK ? put(out, ":", 1) : rc;
}

/* An array or map header: `[` or `{` and a frame, or the whole empty container. */
static int open_container(Out *out, State *state, uint32_t count, int is_map, int *opened) {
    *opened = 0;
    if (count == 0) {
        return put(out, is_map ? "{}" : "[]", 2);
    }
    if (state->depth >= MAX_DEPTH || (is_map && count > MAX_MAP_KEYS)) {
        return DECLINE;
    }
    Frame *frame = &state->frames[state->depth++];
    frame->remaining = count;
    frame->is_map = is_map;
    frame->first_key = state->key_count;
    *opened = 1;
    return put(out, is_map ? "{" : "[", 1);
}

/* Reads one value: writes a scalar or an empty container whole (*opened = 0), or opens a
 * container whose items follow (*opened = 1). */
static int write_item(Reader *in, Out *out, State *state, int *opened) {
    const uint8_t *lead, *bytes;
    uint32_t count;
    *opened = 0;
    if (take(in, 1, &lead) != OK) {
        return DECLINE;
    }
    uint8_t kind = *lead;
    if (kind <= 0x7f) {
        return write_unsigned(out, kind, 0);
    }
    if (kind >= 0xe0) {
        return write_signed(out, (int8_t)kind);
    }
    if ((kind & 0xf0) == 0x80) {
        return open_container(out, state, kind & 0x0f, 1, opened);
    }
    if ((kind & 0xf0) == 0x90) {
        return open_container(out, state, kind & 0x0f, 0, opened);
    }
    if ((kind & 0xe0) == 0xa0 || (kind >= 0xd9 && kind <= 0xdb)) {
        in->at--; /* read_str reads the type byte again */
        if (read_str(in, &bytes, &count) != OK) {
            return DECLINE;
        }
        return write_string(out, bytes, count);
    }
    switch (kind) {
    case 0xc0:
        return put(out, "null", 4);
    case 0xc2:
        return put(out, "false", 5);
    case 0xc3:
        return put(out, "true", 4);
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int width = 1 << (kind - 0xcc);
        if (take(in, (size_t)width, &bytes) != OK) {
            return DECLINE;
        }
        return write_unsigned(out, big_endian(bytes, width), 0);
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int width = 1 << (kind - 0xd0);
        if (take(in, (size_t)width, &bytes) != OK) {
            return DECLINE;
        }
        uint64_t value = big_endian(bytes, width);
        int shift = 64 - 8 * width; /* sign-extend from the value's width */
        return write_signed(out, (int64_t)(value << shift) >> shift);
    }
    case 0xca: {
        if (take(in, 4, &bytes) != OK) {
            return DECLINE;
        }
        uint32_t bits = (uint32_t)big_endian(bytes, 4);
        float single;
        memcpy(&single, &bits, sizeof(single));
        return write_double(out, (double)single);
    }
    case 0xcb: {
        if (take(in, 8, &bytes) != OK) {
            return DECLINE;
        }
        uint64_t bits = big_endian(bytes, 8);
        double value;
        memcpy(&value, &bits, sizeof(value));
        return write_double(out, value);
    }
    case 0xdc: case 0xdd:
        if (length(in, kind == 0xdc ? 2 : 4, &count) != OK) {
            return DECLINE;
        }
        return open_container(out, state, count, 0, opened);
    case 0xde: case 0xdf:
        if (length(in, kind == 0xde ? 2 : 4, &count) != OK) {
            return DECLINE;
        }
        return open_container(out, state, count, 1, opened);
    default: /* bin, ext, timestamps, the unused 0xc1 */
        return DECLINE;
    }
}

/* One whole value as JSON, nested containers and all, without recursion. */
static int write_value(Reader *in, Out *out, State *state) {
    state->depth = 0;
    state->key_count = 0;
    for (;;) {
        int opened;
        int rc = write_item(in, out, state, &opened);
        if (rc != OK) {
            return rc;
        }
        if (opened) {
            if (state->frames[state->depth - 1].is_map) {
                rc = write_key(in, out, state);
                if (rc != OK) {
                    return rc;
                }
            }
            continue;
        }
        /* A value is complete: close every container it completes, then start the next item. */
        for (;;) {
            if (state->depth == 0) {
                return OK;
            }
            Frame *frame = &state->frames[state->depth - 1];
            if (--frame->remaining > 0) {
                if ((rc = put(out, ",", 1)) != OK) {
                    return rc;
                }
                if (frame->is_map && (rc = write_key(in, out, state)) != OK) {
                    return rc;
                }
                break;
            }
            if ((rc = put(out, frame->is_map ? "}" : "]", 1)) != OK) {
                return rc;
            }
            if (frame->is_map) {
                state->key_count = frame->first_key;
            }
            state->depth--;
        }
    }
}

/* -- envelopes -------------------------------------------------------------------------- */

/* `{"data": value}`: the value's JSON appended to `out`. */
static int write_envelope(Reader *in, Out *out, State *state) {
    const uint8_t *lead, *key;
    uint32_t len;
    if (take(in, 1, &lead) != OK || *lead != 0x81) { /* a map of one pair */
        return DECLINE;
    }
    if (read_str(in, &key, &len) != OK || len != 4 || memcmp(key, "data", 4) != 0) {
        return DECLINE;
    }
    return write_value(in, out, state);
}

/* The number of envelopes: 1 for a single one (`in` left at its start), else the array's. */
static int envelope_count(Reader *in, Py_ssize_t limit, uint32_t *count) {
    if (in->at == in->end) {
        return DECLINE;
    }
    uint8_t kind = *in->at;
    if ((kind & 0xf0) == 0x80) {
        *count = 1;
        return OK;
    }
    int rc;
    in->at++;
    if ((kind & 0xf0) == 0x90) {
        *count = kind & 0x0f;
        rc = OK;
    } else if (kind == 0xdc || kind == 0xdd) {
        rc = length(in, kind == 0xdc ? 2 : 4, count);
    } else {
        return DECLINE;
    }
    /* An envelope takes at least 7 bytes: a longer array cannot be whole. */
    size_t most = (size_t)(in->end - in->at) / 7;
    if (rc != OK || *count == 0 || (Py_ssize_t)*count > limit || *count > most) {
        return DECLINE;
    }
    return OK;
}

/* The texts as Raw objects, or NULL with a Python error. Raw's constructor is called through
 * its tp_new with one argument tuple for all (what calling the type does, less the tuple
 * made per call). */
static PyObject *raw_list(const Out *out, const size_t *ends, uint32_t count) {
    PyObject *list = PyList_New(count);
    PyObject *args = PyTuple_New(1);
    if (list == NULL || args == NULL) {
        Py_XDECREF(list);
        Py_XDECREF(args);
        return NULL;
    }
    newfunc make = raw_type->tp_new;
    size_t start = 0;
    for (uint32_t i = 0; i < count; i++) {
        PyObject *text = PyBytes_FromStringAndSize(out->buf + start, (Py_ssize_t)(ends[i] - start));
        if (text == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyObject *previous = PyTuple_GET_ITEM(args, 0);
        PyTuple_SET_ITEM(args, 0, text); /* the tuple holds the one reference */
        Py_XDECREF(previous);
        PyObject *raw = make(raw_type, args, NULL);
        if (raw == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, raw);
        start = ends[i];
    }
    Py_DECREF(args);
    return list;
}

static PyObject *data_texts(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "data_texts(body: bytes, limit: int)");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Reader in = {(const uint8_t *)PyBytes_AS_STRING(args[0]), NULL};
    in.end = in.at + PyBytes_GET_SIZE(args[0]);
    uint32_t count;
    if (envelope_count(&in, limit, &count) != OK) {
        Py_RETURN_NONE;
    }
    State *state = PyMem_Malloc(sizeof(State));
    size_t *ends = PyMem_Malloc(sizeof(size_t) * count);
    Out out = {NULL, 0, 0};
    PyObject *result = NULL;
    int rc = (state == NULL || ends == NULL) ? FAILED : OK;
    if (rc == FAILED) {
        PyErr_NoMemory();
    } else {
        rc = reserve(&out, (size_t)(in.end - in.at) * 2);
    }
    for (uint32_t i = 0; rc == OK && i < count; i++) {
        rc = write_envelope(&in, &out, state);
        ends[i] = out.len;
    }
    if (rc == OK && in.at != in.end) {
        rc = DECLINE; /* bytes after the value */
    }
    if (rc == OK) {
        result = raw_list(&out, ends, count);
    } else if (rc == DECLINE) {
        result = Py_NewRef(Py_None);
    }
    PyMem_Free(out.buf);
    PyMem_Free(ends);
    PyMem_Free(state);
    return result;
}

static PyMethodDef methods[] = {
    {"data_texts", (PyCFunction)(void (*)(void))data_texts, METH_FASTCALL,
     "data_texts(body, limit) -> list[msgspec.Raw] | None: each `data` of a msgpack body of "
     "1..limit data-only envelopes as JSON text, or None when the body is not one this handles."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "msgpackjson", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_msgpackjson(void) {
    init_escapes();
    PyObject *msgspec = PyImport_ImportModule("msgspec");
    if (msgspec == NULL) {
        return NULL;
    }
    PyObject *raw = PyObject_GetAttrString(msgspec, "Raw");
    Py_DECREF(msgspec);
    if (raw == NULL) {
        return NULL;
    }
    if (!PyType_Check(raw) || ((PyTypeObject *)raw)->tp_new == NULL) {
        Py_DECREF(raw);
        PyErr_SetString(PyExc_ImportError, "msgspec.Raw is not a type this module can make");
        return NULL;
    }
    raw_type = (PyTypeObject *)raw;
    PyObject *module = PyModule_Create(&definition);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "AVAILABLE", 1) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
