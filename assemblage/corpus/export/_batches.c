/* Column batches of one SQLite query, read with the system's SQLite library.
 *
 * assemblage.corpus.export.batches wraps this module; see there for why it exists. In short: the
 * export's helper process reads the ``lines`` table of a live corpus (a WAL database that builds may
 * be writing) while the export reads it too. Python's sqlite3 module is far too slow for 1.8 million
 * rows, and the fast readers on PyPI (the ADBC driver, connectorx, DuckDB) each carry a SQLite
 * library of their own, a different version from the one every other connection to the corpus uses.
 * This reader links the system library (the one Python's sqlite3 module links), so the corpus's
 * write-ahead log and its shared-memory index are only ever handled by one SQLite.
 *
 * Reader(uri, sql, kinds, batch_rows) opens ``uri`` read-only and prepares ``sql``; each next()
 * steps up to ``batch_rows`` rows without the GIL and returns (rows, columns), one column per kind:
 *   kind "i" (int64):  (nulls, validity, data)            data: rows little-endian int64
 *   kind "f" (double): (nulls, validity, data)            data: rows float64
 *   kind "s" (text):   (nulls, validity, data, offsets)   offsets: rows + 1 int32, data: the bytes
 *   kind "b" (blob):   (nulls, validity, data, offsets)
 * validity is None when nulls == 0, else a bitmap (bit set: not NULL), as Arrow lays them out. A value
 * of another storage class than its kind's (text in an int64 column, say) is an error that names the
 * column and the row: the caller decides what to do instead; nothing is converted behind its back.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

typedef struct {
    PyObject_HEAD
    sqlite3 *db;
    sqlite3_stmt *stmt;
    int ncols;
    char *kinds;
    Py_ssize_t batch_rows;
    int done;
    Py_ssize_t row; /* rows returned so far, for messages */
} Reader;

static void reader_close(Reader *self) {
    if (self->stmt) {
        sqlite3_finalize(self->stmt);
        self->stmt = NULL;
    }
    if (self->db) {
        sqlite3_close_v2(self->db);
        self->db = NULL;
    }
}

static void Reader_dealloc(Reader *self) {
    reader_close(self);
    PyMem_Free(self->kinds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Reader_init(Reader *self, PyObject *args, PyObject *kwds) {
    static char *names[] = {"uri", "sql", "kinds", "batch_rows", NULL};
    const char *uri, *sql, *kinds;
    Py_ssize_t batch_rows;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sssn", names, &uri, &sql, &kinds, &batch_rows))
        return -1;
    if (batch_rows < 1) {
        PyErr_SetString(PyExc_ValueError, "batch_rows must be at least 1");
        return -1;
    }
    reader_close(self);
    PyMem_Free(self->kinds);
    self->kinds = PyMem_Malloc(strlen(kinds) + 1);
    if (!self->kinds) {
        PyErr_NoMemory();
        return -1;
    }
    strcpy(self->kinds, kinds);
    for (const char *k = kinds; *k; k++) {
        if (!strchr("ifsb", *k)) {
            PyErr_Format(PyExc_ValueError, "unknown column kind %c (one of i, f, s, b)", *k);
            return -1;
        }
    }
    self->batch_rows = batch_rows;
    self->done = 0;
    self->row = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sqlite3_open_v2(uri, &self->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(self->db, 60000); /* as the export's own connection waits for a lock */
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(self->db, sql, -1, &self->stmt, NULL);
    Py_END_ALLOW_THREADS
    if (rc != SQLITE_OK) {
        PyErr_Format(PyExc_RuntimeError, "sqlite: %s", self->db ? sqlite3_errmsg(self->db) : "out of memory");
        reader_close(self);
        return -1;
    }
    self->ncols = sqlite3_column_count(self->stmt);
    if ((size_t)self->ncols != strlen(kinds)) {
        PyErr_Format(PyExc_ValueError, "the query has %d columns, %zu kinds were given", self->ncols, strlen(kinds));
        reader_close(self);
        return -1;
    }
    return 0;
}

typedef struct {
    Buf validity, data, offsets;
    Py_ssize_t nulls;
} Column;

static const char *storage_name(int t) {
    switch (t) {
    case SQLITE_INTEGER: return "an integer";
    case SQLITE_FLOAT: return "a real";
    case SQLITE_TEXT: return "text";
    case SQLITE_BLOB: return "a blob";
    default: return "NULL";
    }
}

/* the storage class a value of this kind must have */
static int storage_of(char kind) {
    return kind == 'i' ? SQLITE_INTEGER : kind == 'f' ? SQLITE_FLOAT : kind == 's' ? SQLITE_TEXT : SQLITE_BLOB;
}

static PyObject *column_tuple(Column *c, char kind, Py_ssize_t rows) {
    PyObject *validity = c->nulls ? PyBytes_FromStringAndSize(c->validity.p, (rows + 7) / 8) : Py_NewRef(Py_None);
    if (!validity)
        return NULL;
    PyObject *data = PyBytes_FromStringAndSize(c->data.p ? c->data.p : "", (Py_ssize_t)c->data.len);
    if (!data) {
        Py_DECREF(validity);
        return NULL;
    }
    if (kind == 'i' || kind == 'f')
        return Py_BuildValue("(nNN)", c->nulls, validity, data);
    PyObject *offsets = PyBytes_FromStringAndSize(c->offsets.p, (Py_ssize_t)c->offsets.len);
    if (!offsets) {
        Py_DECREF(validity);
        Py_DECREF(data);
        return NULL;
    }
    return Py_BuildValue("(nNNN)", c->nulls, validity, data, offsets);
}

static PyObject *Reader_next(Reader *self) {
    if (self->done || !self->stmt)
        return NULL; /* StopIteration */
    int ncols = self->ncols;
    Py_ssize_t cap = self->batch_rows;
    Column *cols = calloc((size_t)ncols, sizeof(Column));
    if (!cols)
        return PyErr_NoMemory();
    int oom = 0, rc = SQLITE_ROW, bad_col = -1, bad_type = 0;
    Py_ssize_t rows = 0;
    for (int j = 0; j < ncols && !oom; j++) {
        char k = self->kinds[j];
        oom |= buf_reserve(&cols[j].validity, (size_t)(cap + 7) / 8) != 0;
        if (!oom)
            memset(cols[j].validity.p, 0, (size_t)(cap + 7) / 8);
        if (k == 'i' || k == 'f') {
            oom |= buf_reserve(&cols[j].data, (size_t)cap * 8) != 0;
        } else {
            oom |= buf_reserve(&cols[j].offsets, (size_t)(cap + 1) * 4) != 0;
            if (!oom)
                memset(cols[j].offsets.p, 0, 4);
        }
    }
    Py_BEGIN_ALLOW_THREADS
    while (!oom && rows < cap) {
        rc = sqlite3_step(self->stmt);
        if (rc != SQLITE_ROW)
            break;
        for (int j = 0; j < ncols; j++) {
            Column *c = &cols[j];
            char k = self->kinds[j];
            int t = sqlite3_column_type(self->stmt, j);
            if (t == SQLITE_NULL) {
                c->nulls++;
            } else {
                if (t != storage_of(k)) {
                    bad_col = j;
                    bad_type = t;
                    break;
                }
                c->validity.p[rows >> 3] |= (char)(1 << (rows & 7));
            }
            if (k == 'i') {
                int64_t v = t == SQLITE_NULL ? 0 : sqlite3_column_int64(self->stmt, j);
                memcpy(c->data.p + rows * 8, &v, 8);
            } else if (k == 'f') {
                double v = t == SQLITE_NULL ? 0.0 : sqlite3_column_double(self->stmt, j);
                memcpy(c->data.p + rows * 8, &v, 8);
            } else {
                const void *p = NULL;
                int n = 0;
                if (t != SQLITE_NULL) {
                    p = k == 's' ? (const void *)sqlite3_column_text(self->stmt, j) : sqlite3_column_blob(self->stmt, j);
                    n = sqlite3_column_bytes(self->stmt, j);
                }
                if (c->data.len + (size_t)n > INT32_MAX || buf_reserve(&c->data, (size_t)n)) {
                    oom = 1;
                    break;
                }
                if (n)
                    memcpy(c->data.p + c->data.len, p, (size_t)n);
                c->data.len += (size_t)n;
                int32_t end = (int32_t)c->data.len;
                memcpy(c->offsets.p + (rows + 1) * 4, &end, 4);
            }
        }
        if (bad_col >= 0 || oom)
            break;
        rows++;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (oom) {
        PyErr_SetString(PyExc_MemoryError, "a batch of the query does not fit in memory (or a text column passed 2 GiB)");
    } else if (bad_col >= 0) {
        PyErr_Format(PyExc_TypeError, "column %d (%s) of row %zd holds %s, not %s", bad_col,
                     sqlite3_column_name(self->stmt, bad_col), self->row + rows + 1, storage_name(bad_type),
                     storage_name(storage_of(self->kinds[bad_col])));
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        PyErr_Format(PyExc_RuntimeError, "sqlite: %s", sqlite3_errmsg(self->db));
    } else {
        if (rc == SQLITE_DONE)
            self->done = 1;
        if (rows == 0) {
            result = NULL; /* StopIteration */
        } else {
            for (int j = 0; j < ncols; j++) {
                char k = self->kinds[j];
                if (k == 'i' || k == 'f')
                    cols[j].data.len = (size_t)rows * 8;
                else
                    cols[j].offsets.len = (size_t)(rows + 1) * 4;
            }
            PyObject *list = PyList_New(ncols);
            for (int j = 0; list && j < ncols; j++) {
                PyObject *col = column_tuple(&cols[j], self->kinds[j], rows);
                if (!col) {
                    Py_CLEAR(list);
                    break;
                }
                PyList_SET_ITEM(list, j, col);
            }
            if (list)
                result = Py_BuildValue("(nN)", rows, list);
            self->row += rows;
        }
    }
    if (!result || PyErr_Occurred())
        self->done = 1;
    for (int j = 0; j < ncols; j++) {
        buf_free(&cols[j].validity);
        buf_free(&cols[j].data);
        buf_free(&cols[j].offsets);
    }
    free(cols);
    return result;
}

static PyObject *Reader_close(Reader *self, PyObject *Py_UNUSED(ignored)) {
    reader_close(self);
    self->done = 1;
    Py_RETURN_NONE;
}

static PyObject *Reader_enter(Reader *self, PyObject *Py_UNUSED(ignored)) {
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Reader_exit(Reader *self, PyObject *args) {
    return Reader_close(self, NULL);
}

static PyMethodDef Reader_methods[] = {
    {"close", (PyCFunction)Reader_close, METH_NOARGS, "Finalize the query and close the connection."},
    {"__enter__", (PyCFunction)Reader_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Reader_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "assemblage.corpus.export._batches.Reader",
    .tp_doc = "Reader(uri, sql, kinds, batch_rows): column batches of one query (see the module).",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Reader_next,
    .tp_methods = Reader_methods,
};

static PyObject *library_version(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    return PyUnicode_FromString(sqlite3_libversion());
}

static PyMethodDef module_methods[] = {
    {"sqlite_version", library_version, METH_NOARGS, "The version of the SQLite library this reader runs."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_batches",
    .m_doc = "Column batches of one SQLite query (see assemblage.corpus.export.batches).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__batches(void) {
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
