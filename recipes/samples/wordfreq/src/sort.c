#include "table.h"

static int before(const struct entry *a, const struct entry *b) {
    return a->count > b->count;
}

static void merge(struct entry **items, struct entry **tmp, size_t lo, size_t mid, size_t hi) {
    size_t i = lo, j = mid, k = lo;
    while (i < mid && j < hi)
        tmp[k++] = before(items[j], items[i]) ? items[j++] : items[i++];
    while (i < mid) tmp[k++] = items[i++];
    while (j < hi) tmp[k++] = items[j++];
    for (k = lo; k < hi; k++) items[k] = tmp[k];
}

static void merge_sort(struct entry **items, struct entry **tmp, size_t lo, size_t hi) {
    if (hi - lo < 2)
        return;
    size_t mid = lo + (hi - lo) / 2;
    merge_sort(items, tmp, lo, mid);
    merge_sort(items, tmp, mid, hi);
    merge(items, tmp, lo, mid, hi);
}

#include <stdlib.h>
void sort_entries(struct entry **items, size_t n) {
    struct entry **tmp = malloc(n * sizeof *tmp);
    merge_sort(items, tmp, 0, n);
    free(tmp);
}
