/* One commit's I/O in one call without the GIL: write, data sync, tell the event loop.
 *
 * The C twin of commitio.py, built by `python -m agent.native.build` and loaded in its place
 * with the rest of a matching build (see agent/native). `commit(fd, parts, offset, sync,
 * notify_fd)` writes the bytes objects of `parts` in order at `offset` (pwritev, short writes
 * and EINTR retried), then fdatasyncs `fd` if `sync`, then writes 1 as an 8-byte native
 * integer to `notify_fd` (an eventfd adds it to its count; a pipe, where there is no eventfd,
 * carries it), all with the GIL released once. The event loop, which watches `notify_fd`, learns that the
 * commit is done without waiting for the writer thread to take the GIL back (it would have to
 * after each blocking call, and again to call into the loop). Any failure raises OSError and
 * leaves `notify_fd` untouched: nothing is reported done that was not written and synced.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_IOV 1024 /* IOV_MAX on Linux; longer lists are written in several calls */

/* Write every iovec at `offset`, retrying short writes and EINTR; 0 or an errno. */
static int write_all(int fd, struct iovec *iov, int count, off_t offset) {
    while (count > 0) {
        int batch = count < MAX_IOV ? count : MAX_IOV;
        ssize_t written = pwritev(fd, iov, batch, offset);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (written == 0) {
            return EIO; /* no progress on bytes still to write: fail rather than spin */
        }
        offset += written;
        /* Skip what was written: whole iovecs, then part of the next. */
        while (count > 0 && (size_t)written >= iov->iov_len) {
            written -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0 && written > 0) {
            iov->iov_base = (char *)iov->iov_base + written;
            iov->iov_len -= (size_t)written;
        }
    }
    return 0;
}

static int sync_data(int fd) {
    while (fdatasync(fd) != 0) {
        if (errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

static int notify(int fd) {
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) != (ssize_t)sizeof one) {
        if (errno != EINTR) {
            return errno;
        }
    }
    return 0;
}

/* A file descriptor argument as an int; -1 with an exception set when it is none. */
static int as_fd(PyObject *value) {
    long fd = PyLong_AsLong(value);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return -1;
    }
    return (int)fd;
}

static PyObject *commit(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "commit(fd, parts, offset, sync, notify_fd)");
        return NULL;
    }
    int fd = as_fd(args[0]);
    if (fd < 0) {
        return NULL;
    }
    if (!PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "parts must be a list of bytes");
        return NULL;
    }
    long long offset = PyLong_AsLongLong(args[2]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (offset < 0) {
        PyErr_SetString(PyExc_ValueError, "offset must not be negative");
        return NULL;
    }
    int sync = PyObject_IsTrue(args[3]);
    if (sync < 0) {
        return NULL;
    }
    int notify_fd = as_fd(args[4]);
    if (notify_fd < 0) {
        return NULL;
    }
    /* A tuple copy holds every part alive (and unchanged: bytes are immutable) while the GIL
     * is released, whatever happens to the list meanwhile. */
    PyObject *parts = PySequence_Tuple(args[1]);
    if (parts == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(parts);
    if (count > INT_MAX) {
        Py_DECREF(parts);
        PyErr_SetString(PyExc_OverflowError, "too many parts");
        return NULL;
    }
    struct iovec *iov = NULL;
    if (count > 0) {
        iov = PyMem_New(struct iovec, (size_t)count);
        if (iov == NULL) {
            Py_DECREF(parts);
            return PyErr_NoMemory();
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = PyTuple_GET_ITEM(parts, i);
        if (!PyBytes_Check(part)) {
            PyMem_Free(iov);
            Py_DECREF(parts);
            PyErr_SetString(PyExc_TypeError, "parts must be a list of bytes");
            return NULL;
        }
        iov[i].iov_base = PyBytes_AS_STRING(part);
        iov[i].iov_len = (size_t)PyBytes_GET_SIZE(part);
    }
    int error = 0;
    Py_BEGIN_ALLOW_THREADS
    error = write_all(fd, iov, (int)count, (off_t)offset);
    if (error == 0 && sync) {
        error = sync_data(fd);
    }
    if (error == 0) {
        error = notify(notify_fd);
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(iov);
    Py_DECREF(parts);
    if (error != 0) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"commit", (PyCFunction)(void (*)(void))commit, METH_FASTCALL,
     "commit(fd, parts, offset, sync, notify_fd): write, fdatasync if sync, add 1 to "
     "notify_fd; one GIL release. OSError on any failure, and then no notification."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "commitio", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_commitio(void) {
    PyObject *module = PyModule_Create(&definition);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "AVAILABLE", Py_True) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
