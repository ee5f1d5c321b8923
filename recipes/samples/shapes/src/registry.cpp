#include "shapes.hpp"

namespace geo {

void Registry::add(std::unique_ptr<Shape> s) { shapes_.push_back(std::move(s)); }

double Registry::total_area() const {
    auto areas = map_shapes<double>(shapes_, [](const Shape& s) { return s.area(); });
    return sum_of(areas);
}

}  // namespace geo
