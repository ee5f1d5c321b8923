#include <stdio.h>
#include "vec.h"

static void show(const char *label, vec3 v) { printf("%s (%g, %g, %g)\n", label, v.x, v.y, v.z); }

int main(void) {
    vec3 a = {1, 2, 3}, b = {4, 5, 6};
    show("sum", vec_add(a, b));
    show("cross", vec_cross(a, b));
    show("unit", vec_normalize(a));
    printf("dot %g\n", vec_dot(a, b));
    return 0;
}
