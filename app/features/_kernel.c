/* The feature specification's per-user pass, compiled: app/features/compute.py calls it.
 *
 * Why C: the same computation as whole-array numpy passes touched every event some twenty times, and was
 * the largest cost of scoring in bulk and of every served batch. Here each user's events are read once
 * for the counts, and the user's purchases again for the gaps' two-pass variance.
 *
 * The values are those numpy's passes gave, bit for bit (tests/test_features_kernel.py compares them
 * on random and simulated logs): the same operations in the same order on the same doubles. Sums of
 * whole cents, counts and ratings are exact in an int64 and in a double alike; the gap sums, which are
 * not whole, are added in event order, as numpy's bincount does; the build turns off fused multiply-add
 * (pyproject.toml), which would round once where numpy rounds twice. The decayed spend stays in numpy
 * (compute.py): its exp2 must be numpy's, which differs from the C library's in the last bit.
 *
 * The layout (which column holds what, the windows, the type codes) comes from Python's specification
 * at each call, as named integers and reals in the orders LAYOUT and REAL_LAYOUT below give.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_TYPES 32
#define MAX_WINDOWS 8

/* Named integers of the layout, in the order of the module's LAYOUT tuple. */
enum {
    L_N_TYPES, L_N_WINDOWS, L_EDGE_0, L_EDGE_LAST = L_EDGE_0 + MAX_WINDOWS - 1,
    L_COUNT_START, L_WINDOW_30, L_WINDOW_90,
    L_PURCHASE, L_REFUND, L_ADD_TO_CART, L_REVIEW,
    L_DAY_SECONDS, L_PERIOD_SECONDS, L_MAX_PERIODS, L_LOW_RATING_MAX, L_REVIEW_WINDOW_SECONDS,
    /* columns */
    C_PURCHASE_AMOUNT_30, C_PURCHASE_AMOUNT_90, C_REFUND_AMOUNT_30, C_REFUND_AMOUNT_90,
    C_DAYS_SINCE_LAST_PURCHASE, C_DAYS_SINCE_LAST_EVENT, C_TENURE, C_LIFETIME_PURCHASES,
    C_LIFETIME_SPEND, C_GAP_MEAN, C_GAP_STD, C_CART_CONVERSION, C_REVIEW_MEAN, C_LOW_RATINGS,
    C_PERIOD_SHARE, C_PURCHASE_DAYS, C_OVERDUE, C_TREND_ACTIVITY, C_TREND_SPEND,
    L_SIZE
};
static const char *LAYOUT_NAMES[L_SIZE] = {
    "n_types", "n_windows",
    "edge_0", "edge_1", "edge_2", "edge_3", "edge_4", "edge_5", "edge_6", "edge_7",
    "count_start", "window_30", "window_90",
    "purchase", "refund", "add_to_cart", "review",
    "day_seconds", "period_seconds", "max_periods", "low_rating_max", "review_window_seconds",
    "purchase_amount_30d", "purchase_amount_90d", "refund_amount_30d", "refund_amount_90d",
    "days_since_last_purchase", "days_since_last_event", "tenure_days", "lifetime_purchases",
    "lifetime_spend", "purchase_gap_mean_days", "purchase_gap_std_days", "cart_conversion_30d",
    "review_rating_mean_90d", "low_rating_count_90d", "purchase_period_share_12",
    "purchase_days_lifetime", "purchase_overdue_ratio", "trend_activity_30d_vs_90d",
    "trend_spend_30d_vs_90d",
};

/* Named reals, in the order of REAL_LAYOUT. */
enum { R_RECENCY_CAP, R_OVERDUE_CAP, R_SIZE };
static const char *REAL_LAYOUT_NAMES[R_SIZE] = {"recency_cap_days", "overdue_cap"};

/* Where a stored record holds what (app/features/records.py), in the order of RECORD_LAYOUT: ts a
 * big-endian u32, kind and rating bytes, cents a big-endian i32. */
enum { F_SIZE, F_TS, F_KIND, F_RATING, F_CENTS, F_COUNT };
static const char *RECORD_LAYOUT_NAMES[F_COUNT] = {"size", "ts", "kind", "rating", "cents"};

typedef struct {
    const int64_t *ts;
    const uint8_t *kind;
    const int64_t *cents;
    const uint8_t *rating;
} Events;

static double trend(double recent, double ninety) {
    double earlier = (ninety - recent) / 2.0;
    return (recent - earlier) / (recent + earlier + 1.0);
}

/* One user's row from their events [first, end), in time order, none later than as_of. */
static void user_row(const Events *ev, Py_ssize_t first, Py_ssize_t end, int64_t as_of, const int64_t *L,
                     const double *R, double *row) {
    const int64_t n_types = L[L_N_TYPES], n_windows = L[L_N_WINDOWS];
    const int64_t purchase = L[L_PURCHASE], refund = L[L_REFUND], review = L[L_REVIEW];
    const double day = (double)L[L_DAY_SECONDS];
    /* Events by type and narrowest window, flat: only the n_types x (n_windows + 1) in use are cleared,
     * which for thousands of users a batch costs less than clearing the whole array each time. */
    const int64_t slots = n_windows + 1;
    int64_t counts[MAX_TYPES * (MAX_WINDOWS + 1)];
    memset(counts, 0, (size_t)(n_types * slots) * sizeof(int64_t));
    int64_t paid[2][MAX_WINDOWS + 1] = {{0}};  /* cents of purchases, refunds, by narrowest window */
    int64_t purchases = 0, spend = 0, rating_sum = 0, low_ratings = 0, purchase_days = 0, bought = 0;
    int64_t last_purchase = 0, previous_day = -1, previous_period = -1, gaps = 0;
    double gap_sum = 0.0;
    const int64_t periods_reached = 1 + (as_of - ev->ts[first]) / L[L_PERIOD_SECONDS];
    const int64_t periods = periods_reached < L[L_MAX_PERIODS] ? periods_reached : L[L_MAX_PERIODS];

    /* The narrowest window holding the event (n_windows: older than all). Events come oldest first, so
     * the slot only narrows: found once, then stepped down, with branches that rarely change course. */
    const int64_t *edge = L + L_EDGE_0;
    int64_t slot = 0;
    while (slot < n_windows && as_of - ev->ts[first] >= edge[slot]) slot++;
    for (Py_ssize_t i = first; i < end; i++) {
        const int64_t age = as_of - ev->ts[i];
        const int64_t kind = ev->kind[i];
        while (slot > 0 && age < edge[slot - 1]) slot--;
        counts[kind * slots + slot]++;
        if (kind == review && age < L[L_REVIEW_WINDOW_SECONDS]) {
            rating_sum += ev->rating[i];
            low_ratings += ev->rating[i] <= L[L_LOW_RATING_MAX];
        }
        if (kind == refund) paid[1][slot] += ev->cents[i];
        if (kind != purchase) continue;
        paid[0][slot] += ev->cents[i];
        spend += ev->cents[i];
        if (purchases > 0) {
            gap_sum += (double)(ev->ts[i] - last_purchase) / day;
            gaps++;
        }
        purchases++;
        last_purchase = ev->ts[i];
        const int64_t purchase_day = age / L[L_DAY_SECONDS];
        purchase_days += purchase_day != previous_day;
        previous_day = purchase_day;
        const int64_t period = age / L[L_PERIOD_SECONDS];
        if (period < periods) {
            bought += period != previous_period;
            previous_period = period;
        }
    }

    /* Windows are running sums over the narrowest-window bins. */
    const int64_t start = L[L_COUNT_START];
    for (int64_t kind = 0; kind < n_types; kind++) {
        double running = 0.0;
        for (int64_t window = 0; window < n_windows; window++) {
            running += (double)counts[kind * slots + window];
            row[start + kind * n_windows + window] = running;
        }
    }
    double amounts[2][MAX_WINDOWS];
    for (int k = 0; k < 2; k++) {
        int64_t running = 0;
        for (int64_t window = 0; window < n_windows; window++) {
            running += paid[k][window];
            amounts[k][window] = (double)running / 100.0;
        }
    }
    const int64_t w30 = L[L_WINDOW_30], w90 = L[L_WINDOW_90];
    row[L[C_PURCHASE_AMOUNT_30]] = amounts[0][w30];
    row[L[C_PURCHASE_AMOUNT_90]] = amounts[0][w90];
    row[L[C_REFUND_AMOUNT_30]] = amounts[1][w30];
    row[L[C_REFUND_AMOUNT_90]] = amounts[1][w90];

    const double cap = R[R_RECENCY_CAP];
    const double since_last = (double)(as_of - ev->ts[end - 1]) / day;
    row[L[C_DAYS_SINCE_LAST_EVENT]] = since_last < cap ? since_last : cap;
    row[L[C_TENURE]] = (double)(as_of - ev->ts[first]) / day;
    double since_purchase = row[L[C_DAYS_SINCE_LAST_PURCHASE]];  /* the default, without purchases */
    if (purchases > 0) {
        since_purchase = (double)(as_of - last_purchase) / day;
        since_purchase = since_purchase < cap ? since_purchase : cap;
        row[L[C_DAYS_SINCE_LAST_PURCHASE]] = since_purchase;
    }
    row[L[C_LIFETIME_PURCHASES]] = (double)purchases;
    row[L[C_LIFETIME_SPEND]] = (double)spend / 100.0;

    /* Two passes for the gaps' variance rather than E[g^2] - E[g]^2, which cancels badly. */
    double mean = 0.0, variance = 0.0;
    if (gaps > 0) {
        mean = gap_sum / (double)gaps;
        double squares = 0.0;
        int64_t previous = -1;
        for (Py_ssize_t i = first; i < end; i++) {
            if (ev->kind[i] != purchase) continue;
            if (previous >= 0) {
                const double deviation = (double)(ev->ts[i] - previous) / day - mean;
                squares += deviation * deviation;
            }
            previous = ev->ts[i];
        }
        variance = squares / (double)gaps;
    }
    row[L[C_GAP_MEAN]] = mean;
    row[L[C_GAP_STD]] = sqrt(variance);

    const int64_t count_30 = start + w30, count_90 = start + w90;
    const double cart_30d = row[count_30 + L[L_ADD_TO_CART] * n_windows];
    const double purchase_30d = row[count_30 + purchase * n_windows];
    if (cart_30d > 0) {
        const double conversion = purchase_30d / cart_30d;
        row[L[C_CART_CONVERSION]] = conversion < 1.0 ? conversion : 1.0;
    }
    const double reviews_90d = row[count_90 + review * n_windows];
    if (reviews_90d > 0) row[L[C_REVIEW_MEAN]] = (double)rating_sum / reviews_90d;
    row[L[C_LOW_RATINGS]] = (double)low_ratings;

    row[L[C_PURCHASE_DAYS]] = (double)purchase_days;
    row[L[C_PERIOD_SHARE]] = (double)bought / (double)periods;
    if (purchases >= 2) {
        const double rhythm = mean > 1.0 ? mean : 1.0;
        const double overdue = since_purchase / rhythm;
        row[L[C_OVERDUE]] = R[R_OVERDUE_CAP] < overdue ? R[R_OVERDUE_CAP] : overdue;
    }

    double events_30d = 0.0, events_90d = 0.0;
    for (int64_t kind = 0; kind < n_types; kind++) {
        events_30d += row[count_30 + kind * n_windows];
        events_90d += row[count_90 + kind * n_windows];
    }
    row[L[C_TREND_ACTIVITY]] = trend(events_30d, events_90d);
    row[L[C_TREND_SPEND]] = trend(amounts[0][w30], amounts[0][w90]);
}

static int check_layout(const int64_t *L, Py_ssize_t n_features) {
    if (L[L_N_TYPES] < 1 || L[L_N_TYPES] > MAX_TYPES || L[L_N_WINDOWS] < 1 || L[L_N_WINDOWS] > MAX_WINDOWS ||
        L[L_WINDOW_30] >= L[L_N_WINDOWS] || L[L_WINDOW_90] >= L[L_N_WINDOWS] || L[L_DAY_SECONDS] <= 0 ||
        L[L_PERIOD_SECONDS] <= 0 || L[L_MAX_PERIODS] <= 0 || L[L_COUNT_START] < 0 ||
        L[L_COUNT_START] + L[L_N_TYPES] * L[L_N_WINDOWS] > n_features) {
        PyErr_SetString(PyExc_ValueError, "feature kernel: layout out of range");
        return -1;
    }
    for (int64_t window = 1; window < L[L_N_WINDOWS]; window++) {
        if (L[L_EDGE_0 + window] <= L[L_EDGE_0 + window - 1]) {  /* user_row finds the slot in this order */
            PyErr_SetString(PyExc_ValueError, "feature kernel: window edges not increasing");
            return -1;
        }
    }
    const int64_t codes[] = {L[L_PURCHASE], L[L_REFUND], L[L_ADD_TO_CART], L[L_REVIEW]};
    for (int i = 0; i < 4; i++) {
        if (codes[i] < 0 || codes[i] >= L[L_N_TYPES]) {
            PyErr_SetString(PyExc_ValueError, "feature kernel: a type code out of range");
            return -1;
        }
    }
    for (int column = C_PURCHASE_AMOUNT_30; column < L_SIZE; column++) {
        if (L[column] < 0 || L[column] >= n_features) {
            PyErr_Format(PyExc_ValueError, "feature kernel: column %s out of range", LAYOUT_NAMES[column]);
            return -1;
        }
    }
    return 0;
}

/* Every event's user, time and type in range and order; the first offending index, or -1. */
static Py_ssize_t first_disorder(const int64_t *user, const Events *ev, Py_ssize_t n_events, Py_ssize_t n_users,
                                 int64_t as_of, int64_t n_types) {
    for (Py_ssize_t i = 0; i < n_events; i++) {
        if (user[i] < 0 || user[i] >= n_users || ev->ts[i] > as_of || ev->kind[i] >= n_types) return i;
        if (i > 0 && (user[i] < user[i - 1] || (user[i] == user[i - 1] && ev->ts[i] < ev->ts[i - 1]))) return i;
    }
    return -1;
}

static int sized(const Py_buffer *buffer, Py_ssize_t count, Py_ssize_t item, const char *name) {
    if (buffer->len != count * item) {
        PyErr_Format(PyExc_ValueError, "feature kernel: %s holds %zd bytes, not %zd", name, buffer->len,
                     count * item);
        return -1;
    }
    return 0;
}

static PyObject *features(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer user, ts, kind, cents, rating, layout, reals, out, known;
    long long as_of;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*Ly*y*w*w*", &user, &ts, &kind, &cents, &rating, &as_of, &layout,
                          &reals, &out, &known))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n_events = ts.len / 8, n_users = known.len;
    Py_ssize_t n_features = 0;
    if (n_users > 0) n_features = out.len / 8 / n_users;
    if (sized(&user, n_events, 8, "user") || sized(&ts, n_events, 8, "ts") || sized(&kind, n_events, 1, "kind") ||
        sized(&cents, n_events, 8, "cents") || sized(&rating, n_events, 1, "rating") ||
        sized(&layout, L_SIZE, 8, "layout") || sized(&reals, R_SIZE, 8, "reals") ||
        sized(&out, n_users * n_features, 8, "out"))
        goto done;
    const int64_t *L = layout.buf;
    if (n_events > 0 && check_layout(L, n_features)) goto done;
    const Events ev = {ts.buf, kind.buf, cents.buf, rating.buf};
    const int64_t *users = user.buf;
    Py_ssize_t bad;
    Py_BEGIN_ALLOW_THREADS
    bad = first_disorder(users, &ev, n_events, n_users, as_of, L[L_N_TYPES]);
    if (bad < 0) {
        Py_ssize_t first = 0;
        while (first < n_events) {
            Py_ssize_t end = first + 1;
            while (end < n_events && users[end] == users[first]) end++;
            user_row(&ev, first, end, as_of, L, reals.buf, (double *)out.buf + users[first] * n_features);
            ((char *)known.buf)[users[first]] = 1;
            first = end;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError,
                     "feature kernel: event %zd is out of range or out of (user, time) order, or after as_of",
                     bad);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&user);
    PyBuffer_Release(&ts);
    PyBuffer_Release(&kind);
    PyBuffer_Release(&cents);
    PyBuffer_Release(&rating);
    PyBuffer_Release(&layout);
    PyBuffer_Release(&reals);
    PyBuffer_Release(&out);
    PyBuffer_Release(&known);
    return result;
}

/* A growable array of int64, for the purchases handed back to numpy. */
typedef struct {
    int64_t *data;
    Py_ssize_t size, capacity;
} Column;

static int push(Column *column, int64_t value) {
    if (column->size == column->capacity) {
        Py_ssize_t capacity = column->capacity ? 2 * column->capacity : 1024;
        int64_t *data = PyMem_RawRealloc(column->data, (size_t)capacity * sizeof(int64_t));
        if (data == NULL) return -1;
        column->data = data;
        column->capacity = capacity;
    }
    column->data[column->size++] = value;
    return 0;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* One user's records decoded into the scratch arrays: those with ts <= as_of (records are stored in
 * time order, so a prefix), or -1 when a record is out of order or of an unknown type. */
static Py_ssize_t decode_user(const unsigned char *blob, Py_ssize_t n_records, const int64_t *F, int64_t as_of,
                              int64_t n_types, int64_t *ts, uint8_t *kind, int64_t *cents, uint8_t *rating) {
    Py_ssize_t kept = 0;
    for (Py_ssize_t r = 0; r < n_records; r++, kept++) {
        const unsigned char *record = blob + r * F[F_SIZE];
        ts[r] = be32(record + F[F_TS]);
        if (ts[r] > as_of) break;
        if ((r > 0 && ts[r] < ts[r - 1]) || record[F[F_KIND]] >= n_types) return -1;
        kind[r] = record[F[F_KIND]];
        rating[r] = record[F[F_RATING]];
        cents[r] = (int32_t)be32(record + F[F_CENTS]);
    }
    return kept;
}

static PyObject *column_bytes(const Column *column) {
    return PyBytes_FromStringAndSize((const char *)column->data, column->size * (Py_ssize_t)sizeof(int64_t));
}

static PyObject *features_from_records(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *blobs;
    Py_buffer format, layout, reals, out, known;
    long long as_of;
    if (!PyArg_ParseTuple(args, "O!y*Ly*y*w*w*", &PyList_Type, &blobs, &format, &as_of, &layout, &reals, &out,
                          &known))
        return NULL;
    PyObject *result = NULL;
    Column purchase_user = {0}, purchase_ts = {0}, purchase_cents = {0};
    int64_t *ts = NULL, *cents = NULL;
    uint8_t *kind = NULL, *rating = NULL;
    const Py_ssize_t n_users = known.len;
    const Py_ssize_t n_features = n_users > 0 ? out.len / 8 / n_users : 0;
    if (PyList_GET_SIZE(blobs) != n_users) {
        PyErr_SetString(PyExc_ValueError, "feature kernel: one blob per user");
        goto done;
    }
    if (sized(&format, F_COUNT, 8, "record format") || sized(&layout, L_SIZE, 8, "layout") ||
        sized(&reals, R_SIZE, 8, "reals") || sized(&out, n_users * n_features, 8, "out") ||
        (n_users > 0 && check_layout(layout.buf, n_features)))
        goto done;
    const int64_t *F = format.buf, *L = layout.buf;
    if (F[F_SIZE] < 1 || F[F_TS] < 0 || F[F_TS] + 4 > F[F_SIZE] || F[F_KIND] < 0 || F[F_KIND] >= F[F_SIZE] ||
        F[F_RATING] < 0 || F[F_RATING] >= F[F_SIZE] || F[F_CENTS] < 0 || F[F_CENTS] + 4 > F[F_SIZE]) {
        PyErr_SetString(PyExc_ValueError, "feature kernel: record format out of range");
        goto done;
    }
    Py_ssize_t most = 0;  /* records of the longest string: the scratch arrays' size */
    for (Py_ssize_t u = 0; u < n_users; u++) {
        PyObject *blob = PyList_GET_ITEM(blobs, u);
        if (blob == Py_None) continue;
        if (!PyBytes_Check(blob) || PyBytes_GET_SIZE(blob) % F[F_SIZE] != 0) {
            PyErr_Format(PyExc_ValueError, "feature kernel: user %zd's string is not whole records", u);
            goto done;
        }
        if (PyBytes_GET_SIZE(blob) / F[F_SIZE] > most) most = PyBytes_GET_SIZE(blob) / F[F_SIZE];
    }
    ts = PyMem_RawMalloc((size_t)(most + 1) * sizeof(int64_t));
    cents = PyMem_RawMalloc((size_t)(most + 1) * sizeof(int64_t));
    kind = PyMem_RawMalloc((size_t)most + 1);
    rating = PyMem_RawMalloc((size_t)most + 1);
    if (ts == NULL || cents == NULL || kind == NULL || rating == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const Events ev = {ts, kind, cents, rating};
    const int64_t purchase = L[L_PURCHASE];
    for (Py_ssize_t u = 0; u < n_users; u++) {
        PyObject *blob = PyList_GET_ITEM(blobs, u);
        if (blob == Py_None) continue;
        const Py_ssize_t n_records = PyBytes_GET_SIZE(blob) / F[F_SIZE];
        const Py_ssize_t kept = decode_user((const unsigned char *)PyBytes_AS_STRING(blob), n_records, F, as_of,
                                            L[L_N_TYPES], ts, kind, cents, rating);
        if (kept < 0) {
            PyErr_Format(PyExc_ValueError, "feature kernel: user %zd's records are out of order or of no type", u);
            goto done;
        }
        if (kept == 0) continue;
        user_row(&ev, 0, kept, as_of, L, reals.buf, (double *)out.buf + u * n_features);
        ((char *)known.buf)[u] = 1;
        for (Py_ssize_t r = 0; r < kept; r++) {
            if (kind[r] != purchase) continue;
            if (push(&purchase_user, u) || push(&purchase_ts, ts[r]) || push(&purchase_cents, cents[r])) {
                PyErr_NoMemory();
                goto done;
            }
        }
    }
    result = Py_BuildValue("(NNN)", column_bytes(&purchase_user), column_bytes(&purchase_ts),
                           column_bytes(&purchase_cents));
done:
    PyMem_RawFree(ts);
    PyMem_RawFree(cents);
    PyMem_RawFree(kind);
    PyMem_RawFree(rating);
    PyMem_RawFree(purchase_user.data);
    PyMem_RawFree(purchase_ts.data);
    PyMem_RawFree(purchase_cents.data);
    PyBuffer_Release(&format);
    PyBuffer_Release(&layout);
    PyBuffer_Release(&reals);
    PyBuffer_Release(&out);
    PyBuffer_Release(&known);
    return result;
}

static PyMethodDef METHODS[] = {
    {"features", features, METH_VARARGS,
     "features(user, ts, kind, cents, rating, as_of, layout, reals, out, known): fill the rows of users "
     "with events (int64 user, ts and cents, uint8 kind and rating, in (user, ts) order, none after as_of)."},
    {"features_from_records", features_from_records, METH_VARARGS,
     "features_from_records(blobs, record_format, as_of, layout, reals, out, known) -> (user, ts, cents): "
     "fill the rows of users with stored records (a list of bytes or None, one per row); the purchases' "
     "rows, times and cents as int64 bytes, for the decayed spend."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, .m_name = "_kernel", .m_size = -1, .m_methods = METHODS,
};

static PyObject *names_tuple(const char **names, Py_ssize_t count) {
    PyObject *tuple = PyTuple_New(count);
    for (Py_ssize_t i = 0; tuple != NULL && i < count; i++) {
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL) {
            Py_CLEAR(tuple);
            break;
        }
        PyTuple_SET_ITEM(tuple, i, name);
    }
    return tuple;
}

PyMODINIT_FUNC PyInit__kernel(void) {
    PyObject *module = PyModule_Create(&MODULE);
    if (module == NULL) return NULL;
    if (PyModule_AddObject(module, "LAYOUT", names_tuple(LAYOUT_NAMES, L_SIZE)) < 0 ||
        PyModule_AddObject(module, "REAL_LAYOUT", names_tuple(REAL_LAYOUT_NAMES, R_SIZE)) < 0 ||
        PyModule_AddObject(module, "RECORD_LAYOUT", names_tuple(RECORD_LAYOUT_NAMES, F_COUNT)) < 0 ||
        PyModule_AddIntConstant(module, "MAX_TYPES", MAX_TYPES) < 0 ||
        PyModule_AddIntConstant(module, "MAX_WINDOWS", MAX_WINDOWS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
