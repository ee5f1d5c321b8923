#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "calc.h"

static int run_line(const char *line) {
    const char *error = NULL;
    node *tree = parse_expression(line, &error);
    if (error) {
        fprintf(stderr, "error: %s\n", error);
        free_tree(tree);
        return 1;
    }
    printf("%g\n", evaluate(tree));
    free_tree(tree);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "fib") == 0) {
        unsigned n = (unsigned)atoi(argv[2]);
        printf("%lu\n", fibonacci(n));
        return 0;
    }
    char buf[1024];
    int status = 0;
    while (fgets(buf, sizeof buf, stdin))
        status |= run_line(buf);
    return status;
}
