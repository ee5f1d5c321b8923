#include <iostream>
#include "shapes.hpp"

namespace {

unsigned depth_sum(unsigned n) {  // recursion, internal linkage
    return n == 0 ? 0 : n + depth_sum(n - 1);
}

}  // namespace

int main(int argc, char** argv) {
    geo::Registry reg;
    for (int i = 1; i < argc; ++i)
        reg.add(geo::make_shape(argv[i]));
    if (reg.size() == 0) {
        reg.add(geo::make_shape("circle 1"));
        reg.add(geo::make_shape("rect 2 3"));
    }
    auto names = geo::map_shapes<std::string>(reg.shapes(), [](const geo::Shape& s) { return s.name(); });
    for (const auto& n : names)
        std::cout << n << "\n";
    std::cout << "total area " << reg.total_area() << " depth " << depth_sum(static_cast<unsigned>(reg.size())) << "\n";
    return 0;
}
