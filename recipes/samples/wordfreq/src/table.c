#include <stdlib.h>
#include <string.h>
#include "table.h"

static unsigned long hash_word(const char *s) {
    unsigned long h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

struct table *table_new(size_t nbuckets) {
    struct table *t = calloc(1, sizeof *t);
    t->buckets = calloc(nbuckets, sizeof *t->buckets);
    t->nbuckets = nbuckets;
    return t;
}

void table_add(struct table *t, const char *word) {
    size_t i = hash_word(word) % t->nbuckets;
    for (struct entry *e = t->buckets[i]; e; e = e->next)
        if (strcmp(e->word, word) == 0) { e->count++; return; }
    struct entry *e = malloc(sizeof *e);
    e->word = strdup(word);
    e->count = 1;
    e->next = t->buckets[i];
    t->buckets[i] = e;
    t->size++;
}

struct entry **table_entries(const struct table *t) {
    struct entry **out = malloc((t->size + 1) * sizeof *out);
    size_t n = 0;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct entry *e = t->buckets[i]; e; e = e->next)
            out[n++] = e;
    out[n] = NULL;
    return out;
}

void table_free(struct table *t) {
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct entry *e = t->buckets[i];
        while (e) { struct entry *next = e->next; free(e->word); free(e); e = next; }
    }
    free(t->buckets);
    free(t);
}
