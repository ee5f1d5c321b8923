#include <math.h>
#include "vec.h"

vec3 vec_add(vec3 a, vec3 b) { return (vec3){a.x + b.x, a.y + b.y, a.z + b.z}; }
vec3 vec_scale(vec3 a, double k) { return (vec3){a.x * k, a.y * k, a.z * k}; }
double vec_dot(vec3 a, vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
vec3 vec_cross(vec3 a, vec3 b) {
    return (vec3){a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x};
}
double vec_norm(vec3 a) { return sqrt(vec_dot(a, a)); }
vec3 vec_normalize(vec3 a) {
    double n = vec_norm(a);
    return n == 0 ? a : vec_scale(a, 1.0 / n);
}
