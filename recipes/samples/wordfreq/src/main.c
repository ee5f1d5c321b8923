#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include "table.h"

int main(void) {
    struct table *t = table_new(1024);
    char word[256];
    size_t len = 0;
    int c;
    while ((c = getchar()) != EOF) {
        if (isalnum(c) && len + 1 < sizeof word) {
            word[len++] = (char)tolower(c);
        } else if (len) {
            word[len] = 0;
            table_add(t, word);
            len = 0;
        }
    }
    struct entry **items = table_entries(t);
    sort_entries(items, t->size);
    for (size_t i = 0; i < t->size && i < 10; i++)
        printf("%6u %s\n", items[i]->count, items[i]->word);
    free(items);
    table_free(t);
    return 0;
}
