#include <math.h>
#include "calc.h"

static double apply(node_kind kind, double a, double b) {
    switch (kind) {
    case NODE_ADD: return a + b;
    case NODE_SUB: return a - b;
    case NODE_MUL: return a * b;
    case NODE_DIV: return b == 0 ? NAN : a / b;
    case NODE_POW: return pow(a, b);
    default: return NAN;
    }
}

double evaluate(const node *n) {
    if (!n)
        return NAN;
    switch (n->kind) {
    case NODE_NUM: return n->value;
    case NODE_NEG: return -evaluate(n->left);
    default: return apply(n->kind, evaluate(n->left), evaluate(n->right));
    }
}

unsigned long fibonacci(unsigned n) {
    return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2);
}
