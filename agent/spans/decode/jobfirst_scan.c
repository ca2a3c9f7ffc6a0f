/* The text a JobFirst line's fields are read from, scanned on the direct path.
 *
 * The C twin of jobfirst_scan.py, built by `python -m agent.native.build` and loaded in its
 * place with the rest of a matching build (see agent/native): the same two functions, the same
 * answers, with memmem instead of `bytes.find`, which compiled code reaches through a method
 * lookup, an argument tuple and its parsing on every call.
 *   has_marker(line) -> bool                   "message":"Span  or  "msg":"Span  in the line
 *   first_places_increase(line, needles) -> bool
 *                                              each needle found, each first place after the
 *                                              one before's
 *   prefixed_digits(text, prefix) -> int | None
 *                                              the number after prefix, 1-19 ASCII digits
 *   one_unit_duration(text) -> int | None      a one-unit Go duration in nanoseconds
 * `line` is any object with the buffer protocol (bytes on the hot path); a needle must be bytes;
 * `text` and `prefix` must be str. Where the pure twin answers None, so does this; where a
 * result would not fit 64 bits this answers None too, and the caller's general parse (to
 * which None sends the text) gives the same number.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

static const char MESSAGE_MARKER[] = "\"message\":\"Span ";
static const char MSG_MARKER[] = "\"msg\":\"Span ";

/* The line's bytes: a bytes object's own, else through a buffer released by `done`. */
typedef struct {
    const char *data;
    Py_ssize_t size;
    Py_buffer view;
    int held;
} Bytes;

static int bytes_of(PyObject *line, Bytes *out) {
    if (PyBytes_CheckExact(line)) {
        out->data = PyBytes_AS_STRING(line);
        out->size = PyBytes_GET_SIZE(line);
        out->held = 0;
        return 0;
    }
    if (PyObject_GetBuffer(line, &out->view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    out->data = out->view.buf;
    out->size = out->view.len;
    out->held = 1;
    return 0;
}

static void done(Bytes *bytes) {
    if (bytes->held) {
        PyBuffer_Release(&bytes->view);
    }
}

static PyObject *has_marker(PyObject *Py_UNUSED(module), PyObject *line) {
    Bytes text;
    if (bytes_of(line, &text) < 0) {
        return NULL;
    }
    int found = memmem(text.data, text.size, MESSAGE_MARKER, sizeof MESSAGE_MARKER - 1) != NULL
                || memmem(text.data, text.size, MSG_MARKER, sizeof MSG_MARKER - 1) != NULL;
    done(&text);
    return PyBool_FromLong(found);
}

static PyObject *first_places_increase(PyObject *Py_UNUSED(module), PyObject *const *args,
                                       Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "first_places_increase(line, needles) takes 2 arguments");
        return NULL;
    }
    PyObject *needles = args[1];
    if (!PyList_Check(needles)) {
        PyErr_SetString(PyExc_TypeError, "needles must be a list of bytes");
        return NULL;
    }
    Bytes text;
    if (bytes_of(args[0], &text) < 0) {
        return NULL;
    }
    Py_ssize_t last = -1;
    int increase = 1;
    for (Py_ssize_t at = 0; at < PyList_GET_SIZE(needles); at++) {
        PyObject *needle = PyList_GET_ITEM(needles, at);
        if (!PyBytes_Check(needle)) {
            done(&text);
            PyErr_SetString(PyExc_TypeError, "needles must be a list of bytes");
            return NULL;
        }
        /* bytes.find of an empty needle is 0 */
        const char *place = PyBytes_GET_SIZE(needle) == 0
                                ? text.data
                                : memmem(text.data, text.size, PyBytes_AS_STRING(needle),
                                         PyBytes_GET_SIZE(needle));
        Py_ssize_t found = place == NULL ? -1 : place - text.data;
        if (found <= last) {
            increase = 0;
            break;
        }
        last = found;
    }
    done(&text);
    return PyBool_FromLong(increase);
}

static PyObject *prefixed_digits(PyObject *Py_UNUSED(module), PyObject *const *args,
                                 Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "prefixed_digits(text: str, prefix: str)");
        return NULL;
    }
    PyObject *text = args[0];
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    Py_ssize_t from = PyUnicode_GET_LENGTH(args[1]);
    if (size - from < 1 || size - from > 19
        || PyUnicode_Tailmatch(text, args[1], 0, from, -1) != 1) {
        Py_RETURN_NONE;
    }
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    unsigned long long value = 0; /* 19 digits < 10**19 < 2**64 */
    for (Py_ssize_t at = from; at < size; at++) {
        Py_UCS4 digit = PyUnicode_READ(kind, data, at);
        if (digit < '0' || digit > '9') {
            Py_RETURN_NONE;
        }
        value = value * 10 + (digit - '0');
    }
    return PyLong_FromUnsignedLongLong(value);
}

#define SECOND_NS 1000000000ULL
#define MAX_DURATION_DIGITS 18

static PyObject *one_unit_duration(PyObject *Py_UNUSED(module), PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "one_unit_duration(text: str)");
        return NULL;
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (size < 1) {
        Py_RETURN_NONE;
    }
    unsigned long long scale;
    Py_ssize_t end; /* the number is text[:end] */
    Py_UCS4 unit = PyUnicode_READ(kind, data, size - 1);
    if (unit == 's') {
        Py_UCS4 before = size >= 2 ? PyUnicode_READ(kind, data, size - 2) : 0;
        end = size - 2;
        switch (before) {
        case 'n': scale = 1; break;
        case 'u': case 0xB5 /* micro sign */: case 0x3BC /* Greek mu */: scale = 1000; break;
        case 'm': scale = 1000000; break;
        default: scale = SECOND_NS; end = size - 1; break;
        }
    } else if (unit == 'm') {
        scale = 60 * SECOND_NS;
        end = size - 1;
    } else if (unit == 'h') {
        scale = 3600 * SECOND_NS;
        end = size - 1;
    } else {
        Py_RETURN_NONE;
    }
    unsigned long long number = 0;
    int digits = 0, places = 0, point = -1;
    for (Py_ssize_t at = 0; at < end; at++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, at);
        if (c == '.' && point < 0) {
            point = (int)at;
            continue;
        }
        if (c < '0' || c > '9' || ++digits > MAX_DURATION_DIGITS) {
            Py_RETURN_NONE;
        }
        number = number * 10 + (c - '0');
        if (point >= 0) {
            places++;
        }
    }
    if (digits == 0 || point == 0 || (point > 0 && places == 0)) {
        Py_RETURN_NONE;
    }
    unsigned __int128 nanos = (unsigned __int128)number * scale;
    for (int at = 0; at < places; at++) {
        nanos /= 10; /* floor division by 10**places, one place at a time: the same floor */
    }
    if (nanos > (unsigned __int128)LLONG_MAX) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)nanos);
}

static PyMethodDef methods[] = {
    {"has_marker", (PyCFunction)has_marker, METH_O,
     "has_marker(line) -> bool: whether the line holds a JobFirst span line's marker."},
    {"first_places_increase", (PyCFunction)(void (*)(void))first_places_increase, METH_FASTCALL,
     "first_places_increase(line, needles) -> bool: whether each needle is found after the "
     "first place of the one before."},
    {"prefixed_digits", (PyCFunction)(void (*)(void))prefixed_digits, METH_FASTCALL,
     "prefixed_digits(text, prefix) -> int | None: the number after prefix when the rest is 1 "
     "to 19 ASCII digits."},
    {"one_unit_duration", (PyCFunction)one_unit_duration, METH_O,
     "one_unit_duration(text) -> int | None: a Go duration of one unit in nanoseconds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "jobfirst_scan", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_jobfirst_scan(void) { return PyModule_Create(&definition); }
