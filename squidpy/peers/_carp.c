/* CARP's cold path in C: the ranking of an array's peers for one request.
 *
 * Squid 5.7 keeps one running hash over the key from peer to peer, so a pick costs one
 * dependent step per key byte per peer (32 peers and an 80-byte URL: 2,560 steps), about
 * 90 ns each in CPython and under a nanosecond here.  squidpy/peers/hashing.py states the
 * arithmetic and works out, once per configuration, everything that depends only on the
 * peers; tests/test_carp_hash.py holds the same loop in Python as the specification and
 * compares the two.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MIX 0x62531965u

/* One peer as hashing.pack_scoring() lays it out (struct format "@IId"). */
struct peer {
    uint32_t key;           /* which key goes into the running hash before this peer is scored */
    uint32_t hash;          /* the peer's hash */
    double multiplier;      /* its load multiplier */
};

struct ranked {
    double score;
    Py_ssize_t index;
};

/* Keeps a value computed where it stands: without it GCC adds the byte to the rotated
 * hash and that sum to the hash, three operations on the path from one byte's hash to the
 * next's instead of two (0.5 of the 3 us of a cold pick with 32 parents). */
#if defined(__GNUC__)
#define KEEP(x) __asm__("" : "+r"(x))
#else
#define KEEP(x) ((void)0)
#endif

static uint32_t rotl(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

/* order(keys, scoring): keys is a tuple of bytes, scoring one struct peer per peer in
 * Squid's order.  Returns the peers' indices by falling score, ties to the earlier,
 * scores not above 0 (or NaN) left out: as bytes when there are at most 256 peers,
 * else as a tuple of ints. */
static PyObject *carp_order(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyTuple_Check(args[0]) || !PyBytes_Check(args[1])
            || PyBytes_GET_SIZE(args[1]) % sizeof(struct peer) != 0) {
        PyErr_SetString(PyExc_TypeError, "order() takes a tuple of keys and the packed scoring");
        return NULL;
    }
    PyObject *keys = args[0];
    Py_ssize_t nkeys = PyTuple_GET_SIZE(keys);
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(keys, k))) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            return NULL;
        }
    }
    const char *packed = PyBytes_AS_STRING(args[1]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[1]) / (Py_ssize_t)sizeof(struct peer);
    struct ranked *ranked = PyMem_New(struct ranked, n ? n : 1);
    if (ranked == NULL)
        return PyErr_NoMemory();

    uint32_t h = 0;
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        struct peer p;
        memcpy(&p, packed + i * sizeof p, sizeof p);
        if (p.key >= nkeys) {
            PyMem_Free(ranked);
            PyErr_SetString(PyExc_IndexError, "a peer's key index is out of range");
            return NULL;
        }
        PyObject *key = PyTuple_GET_ITEM(keys, p.key);
        const signed char *c = (const signed char *)PyBytes_AS_STRING(key);    /* char is signed in Squid on x86 */
        const signed char *end = c + PyBytes_GET_SIZE(key);
        for (; c < end; c++) {
            uint32_t plus = h + (uint32_t)*c;
            KEEP(plus);
            h = plus + rotl(h, 19);
        }
        uint32_t x = h ^ p.hash;
        x += x * MIX;
        double score = (double)rotl(x, 21) * p.multiplier;
        if (!(score > 0))
            continue;
        /* insertion: stable (after every equal score), and the arrays are small */
        Py_ssize_t at = kept++;
        while (at > 0 && ranked[at - 1].score < score) {
            ranked[at] = ranked[at - 1];
            at--;
        }
        ranked[at].score = score;
        ranked[at].index = i;
    }

    PyObject *result;
    if (n <= 256) {
        result = PyBytes_FromStringAndSize(NULL, kept);
        if (result != NULL) {
            unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
            for (Py_ssize_t i = 0; i < kept; i++)
                out[i] = (unsigned char)ranked[i].index;
        }
    } else {
        result = PyTuple_New(kept);
        for (Py_ssize_t i = 0; result != NULL && i < kept; i++) {
            PyObject *index = PyLong_FromSsize_t(ranked[i].index);
            if (index == NULL)
                Py_CLEAR(result);
            else
                PyTuple_SET_ITEM(result, i, index);
        }
    }
    PyMem_Free(ranked);
    return result;
}

static PyMethodDef carp_methods[] = {
    {"order", (PyCFunction)(void (*)(void))carp_order, METH_FASTCALL,
     "order(keys, scoring) -> the peers' indices, best first (see squidpy.peers.hashing)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef carp_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "squidpy.peers._carp",
    .m_doc = "CARP's running hash over the key and the ranking of peers, in C.",
    .m_size = -1,
    .m_methods = carp_methods,
};

PyMODINIT_FUNC PyInit__carp(void)
{
    return PyModule_Create(&carp_module);
}
