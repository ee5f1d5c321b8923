#pragma once
#include <memory>
#include <string>
#include <vector>

namespace geo {

class Shape {
public:
    virtual ~Shape() = default;
    virtual double area() const = 0;
    virtual double perimeter() const = 0;
    virtual std::string name() const = 0;
};

class Circle : public Shape {
public:
    explicit Circle(double r) : radius_(r) {}
    double area() const override;
    double perimeter() const override;
    std::string name() const override { return "circle"; }
private:
    double radius_;
};

class Rectangle : public Shape {
public:
    Rectangle(double w, double h) : width_(w), height_(h) {}
    double area() const override;
    double perimeter() const override;
    std::string name() const override { return "rectangle"; }
private:
    double width_, height_;
};

template <typename T>
T sum_of(const std::vector<T>& values) {
    T total{};
    for (const auto& v : values)
        total += v;
    return total;
}

template <typename T, typename F>
std::vector<T> map_shapes(const std::vector<std::unique_ptr<Shape>>& shapes, F f) {
    std::vector<T> out;
    out.reserve(shapes.size());
    for (const auto& s : shapes)
        out.push_back(f(*s));
    return out;
}

class Registry {
public:
    void add(std::unique_ptr<Shape> s);
    double total_area() const;
    std::size_t size() const { return shapes_.size(); }
    const std::vector<std::unique_ptr<Shape>>& shapes() const { return shapes_; }
private:
    std::vector<std::unique_ptr<Shape>> shapes_;
};

std::unique_ptr<Shape> make_shape(const std::string& spec);

}  // namespace geo
