#ifndef TABLE_H
#define TABLE_H
#include <stddef.h>

struct entry { char *word; unsigned count; struct entry *next; };
struct table { struct entry **buckets; size_t nbuckets; size_t size; };

struct table *table_new(size_t nbuckets);
void table_add(struct table *t, const char *word);
struct entry **table_entries(const struct table *t);
void table_free(struct table *t);
void sort_entries(struct entry **items, size_t n);

#endif
