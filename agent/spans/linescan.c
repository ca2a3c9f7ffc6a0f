/* Scans of a read's text by lines: its line count, and where a pretty-printed object closes.
 *
 * The C twin of linescan.py, built by `python -m agent.native.build` and loaded in its place
 * with the rest of a matching build (see agent/native). Same functions, same answers:
 *   count_lines(text, start, end)  the newlines in text[start:end] (indexes as a slice
 *                                  takes them): 16 bytes a step with SSE2 compares
 *   object_close(text, at)         the index of the newline before the last line that is
 *                                  just `}` ahead of the next line beginning with `{` after
 *                                  the one at `at` (or the end); -1 for none
 * Every read is within [0, len(text)): indexes are clamped or checked first, and each loop
 * is bounded by the text's length.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static Py_ssize_t newlines(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t count = 0, i = 0;
#if defined(__SSE2__)
    const __m128i newline = _mm_set1_epi8('\n');
    const __m128i zero = _mm_setzero_si128();
    while (n - i >= 16) {
        /* Each byte lane counts up to 255 matches before the lanes are summed. */
        Py_ssize_t steps = (n - i) / 16;
        if (steps > 255) {
            steps = 255;
        }
        __m128i lanes = zero;
        for (Py_ssize_t step = 0; step < steps; step++, i += 16) {
            __m128i chunk = _mm_loadu_si128((const __m128i *)(s + i));
            lanes = _mm_sub_epi8(lanes, _mm_cmpeq_epi8(chunk, newline));
        }
        __m128i sums = _mm_sad_epu8(lanes, zero); /* two 16-bit sums, at words 0 and 4 */
        count += _mm_cvtsi128_si32(sums) + _mm_extract_epi16(sums, 4);
    }
#endif
    for (; i < n; i++) {
        count += s[i] == '\n';
    }
    return count;
}

/* A slice's index as bytes.count takes it: negative from the end, clamped to [0, len]. */
static Py_ssize_t slice_index(Py_ssize_t index, Py_ssize_t len) {
    if (index < 0) {
        index += len;
        return index < 0 ? 0 : index;
    }
    return index > len ? len : index;
}

static PyObject *count_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1]) ||
        !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "count_lines(text: bytes, start: int, end: int)");
        return NULL;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    /* Clipped to PY_SSIZE_T_MIN or _MAX past their range, as a slice's indexes are. */
    Py_ssize_t start = PyNumber_AsSsize_t(args[1], NULL);
    Py_ssize_t end = PyNumber_AsSsize_t(args[2], NULL);
    start = slice_index(start, len);
    end = slice_index(end, len);
    if (end <= start) {
        return PyLong_FromLong(0);
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    return PyLong_FromSsize_t(newlines(s + start, end - start));
}

static PyObject *object_close(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "object_close(text: bytes, at: int)");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t at = PyNumber_AsSsize_t(args[1], NULL); /* clipped: outside either way */
    if (at < 0 || at > n) {
        PyErr_SetString(PyExc_ValueError, "object_close: `at` is outside the text");
        return NULL;
    }
    const char *s = PyBytes_AS_STRING(args[0]);
    /* The next "\n{" that starts at at + 1 or later: a `{` at at + 2 or later whose byte
     * before is a newline. */
    Py_ssize_t bound = n;
    for (Py_ssize_t from = at + 2; from < n;) {
        const char *brace = memchr(s + from, '{', (size_t)(n - from));
        if (brace == NULL) {
            break;
        }
        Py_ssize_t found = brace - s; /* >= at + 2 >= 2 */
        if (s[found - 1] == '\n') {
            bound = found;
            break;
        }
        from = found + 1;
    }
    /* The last "\n}\n" within [at, bound). */
    for (Py_ssize_t i = bound - 3; i >= at; i--) {
        if (s[i + 1] == '}' && s[i] == '\n' && s[i + 2] == '\n') {
            return PyLong_FromSsize_t(i);
        }
    }
    return PyLong_FromLong(-1);
}

static PyMethodDef methods[] = {
    {"count_lines", (PyCFunction)(void (*)(void))count_lines, METH_FASTCALL,
     "count_lines(text, start, end) -> int: the newlines in text[start:end]."},
    {"object_close", (PyCFunction)(void (*)(void))object_close, METH_FASTCALL,
     "object_close(text, at) -> int: where the pretty-printed object at `at` closes, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "linescan", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_linescan(void) {
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
