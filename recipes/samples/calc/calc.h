#ifndef CALC_H
#define CALC_H

typedef enum { NODE_NUM, NODE_ADD, NODE_SUB, NODE_MUL, NODE_DIV, NODE_POW, NODE_NEG } node_kind;

typedef struct node {
    node_kind kind;
    double value;
    struct node *left, *right;
} node;

node *parse_expression(const char *text, const char **error);
double evaluate(const node *n);
void free_tree(node *n);
unsigned long fibonacci(unsigned n);

#endif
