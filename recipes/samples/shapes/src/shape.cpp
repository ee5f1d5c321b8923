#include "shapes.hpp"
#include <cmath>
#include <sstream>

namespace geo {

double Circle::area() const { return M_PI * radius_ * radius_; }
double Circle::perimeter() const { return 2 * M_PI * radius_; }
double Rectangle::area() const { return width_ * height_; }
double Rectangle::perimeter() const { return 2 * (width_ + height_); }

std::unique_ptr<Shape> make_shape(const std::string& spec) {
    std::istringstream in(spec);
    std::string kind;
    in >> kind;
    if (kind == "circle") {
        double r = 0;
        in >> r;
        return std::make_unique<Circle>(r);
    }
    double w = 0, h = 0;
    in >> w >> h;
    return std::make_unique<Rectangle>(w, h);
}

}  // namespace geo
