/* A recursive-descent parser for arithmetic expressions. */
#include <ctype.h>
#include <stdlib.h>
#include "calc.h"

struct cursor { const char *p; const char *error; };

static node *parse_sum(struct cursor *c);

static void skip_spaces(struct cursor *c) {
    while (isspace((unsigned char)*c->p))
        c->p++;
}

static node *make_node(node_kind kind, node *left, node *right, double value) {
    node *n = malloc(sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    n->left = left;
    n->right = right;
    n->value = value;
    return n;
}

static node *parse_primary(struct cursor *c) {
    skip_spaces(c);
    if (*c->p == '(') {
        c->p++;
        node *inner = parse_sum(c);
        skip_spaces(c);
        if (*c->p != ')') {
            c->error = "expected ')'";
            return inner;
        }
        c->p++;
        return inner;
    }
    if (*c->p == '-') {
        c->p++;
        return make_node(NODE_NEG, parse_primary(c), NULL, 0);
    }
    char *end;
    double v = strtod(c->p, &end);
    if (end == c->p) {
        c->error = "expected a number";
        return make_node(NODE_NUM, NULL, NULL, 0);
    }
    c->p = end;
    return make_node(NODE_NUM, NULL, NULL, v);
}

static node *parse_power(struct cursor *c) {
    node *base = parse_primary(c);
    skip_spaces(c);
    if (*c->p == '^') {
        c->p++;
        return make_node(NODE_POW, base, parse_power(c), 0); /* right associative */
    }
    return base;
}

static node *parse_product(struct cursor *c) {
    node *left = parse_power(c);
    for (;;) {
        skip_spaces(c);
        if (*c->p == '*') { c->p++; left = make_node(NODE_MUL, left, parse_power(c), 0); }
        else if (*c->p == '/') { c->p++; left = make_node(NODE_DIV, left, parse_power(c), 0); }
        else return left;
    }
}

static node *parse_sum(struct cursor *c) {
    node *left = parse_product(c);
    for (;;) {
        skip_spaces(c);
        if (*c->p == '+') { c->p++; left = make_node(NODE_ADD, left, parse_product(c), 0); }
        else if (*c->p == '-') { c->p++; left = make_node(NODE_SUB, left, parse_product(c), 0); }
        else return left;
    }
}

node *parse_expression(const char *text, const char **error) {
    struct cursor c = { text, NULL };
    node *n = parse_sum(&c);
    skip_spaces(&c);
    if (!c.error && *c.p)
        c.error = "unexpected trailing input";
    *error = c.error;
    return n;
}

void free_tree(node *n) {
    if (!n)
        return;
    free_tree(n->left);
    free_tree(n->right);
    free(n);
}
