#pragma once
/// @file model_view.hpp
/// @brief `lepton::nn::model_view`: a model's parameters, buffers and random-number states as flat
///        lists, built once by the one model walk (reflect.hpp's `detail::visit`).
///
/// Everything that needs a model as data rather than as an expression reads this view: the
/// optimizers (values, gradients, frozen flags, flat offsets), the checkpoint and model files
/// (names, dtypes, shapes, buffers, RNG states), distributed training (gradient reduction,
/// parameter broadcast and hashing, RNG decorrelation) and `nn::init` (the fan-in and fan-out each
/// layer declares). Entries point into the model: the model must outlive the view and must not be
/// moved (parameters are stored inline, so moving the model moves them).
///
/// **Example**:
/// ```
/// lepton::nn::model_view view(model);
/// for (auto const& p : view.parameters()) std::cout << p.name << ' ' << p.size << '\n';
/// ```

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "layer.hpp"
#include "reflect.hpp"

namespace lepton::nn {

/// @brief One tensor of a model as a model_view lists it: a parameter or a buffer.
struct model_tensor {
  std::string name;               ///< dot-joined path (`fc1.weight`, `0.bias`; see reflect.hpp)
  lepton::dtype type;             ///< element type
  std::vector<std::size_t> shape; ///< dimensions (static for parameters and buffers)
  std::size_t size = 0;           ///< number of elements
  void* value = nullptr;          ///< the values
  /// Parameters: the gradient's data when the view was made with `gradients::allocate` (allocated
  /// then if it had no storage of the value's shape), else whatever the gradient holds (nullptr if
  /// it has none). Buffers: nullptr.
  void* grad = nullptr;
  bool* frozen = nullptr; ///< parameters: the param's `frozen` flag; buffers: nullptr
  std::size_t offset = 0; ///< parameters: number of scalars of the parameters before this one
  bool has_fans = false;  ///< whether the owning layer declared fan-in and fan-out (lepton_fans)
  double fan_in = 0;      ///< declared fan-in (has_fans)
  double fan_out = 0;     ///< declared fan-out (has_fans)

  /// The values as `T*`; throws lepton::value_error when `T` is not the element type.
  template <storable_element T> T* values() const {
    check<T>("values");
    return static_cast<T*>(value);
  }
  /// The gradient as `T*` (nullptr when there is none); throws lepton::value_error when `T` is not
  /// the element type.
  template <storable_element T> T* grads() const {
    check<T>("grads");
    return static_cast<T*>(grad);
  }

private:
  template <class T> void check(char const* what) const {
    if (type != dtype_of<T>)
      throw value_error("model_view: " + name + "." + what + "<" + std::string(to_string(dtype_of<T>)) +
                        ">(): the tensor holds " + std::string(to_string(type)));
  }
};

/// @brief The seed and call counter of one layer that draws random numbers (nn::rng_layer).
struct rng_state {
  std::uint64_t* seed;  ///< the layer's `seed`
  std::uint64_t* calls; ///< the layer's `calls`
};

/// @brief Whether building a model_view allocates the parameters' gradients (optimizers and
///        gradient reducers do, so that the gradient addresses they keep stay valid).
enum class gradients : bool {
  leave,   ///< gradients are not touched (files, init)
  allocate ///< a parameter whose gradient has no storage of the value's shape gets one (zeros)
};

/// @brief Requires every parameter to have element type `T`, checked at compile time while the
///        view is built (`model_view(model, gradients::allocate, nn::element<float>)`).
template <class T> struct element_t {};
/// @brief The tag value of element_t.
template <class T> inline constexpr element_t<T> element{};

/// @brief A model's parameters (declaration order), buffers and RNG-carrying layers, listed once.
class model_view {
public:
  /// Walks `model` once. With `gradients::allocate`, parameters without a gradient of the value's
  /// shape get one. The third argument, `nn::element<T>`, makes a parameter of another element type
  /// a compile error. Fans declared by layers (`lepton_fans(declare)`) are attached to their
  /// parameters; a layer declaring a tensor that is not one of the model's parameters is a
  /// lepton::value_error.
  template <class Model, class Elem = void>
  explicit model_view(Model& model, gradients g = gradients::leave, element_t<Elem> = {}) {
    collector<Elem> c{*this, g};
    detail::visit(model, std::string(), c);
    for (auto const& d : c.fans) {
      auto it = std::find_if(m_params.begin(), m_params.end(),
                             [&](model_tensor const& p) { return p.value == d.value; });
      if (it == m_params.end())
        throw value_error("model_view: a layer declared fans for a tensor that is not one of the model's "
                          "parameters (lepton_fans must name the layer's own lepton::param members)");
      it->has_fans = true;
      it->fan_in = d.in;
      it->fan_out = d.out;
    }
  }

  /// The parameters, in declaration order (the order of optimizers, checkpoints and reducers).
  std::vector<model_tensor> const& parameters() const& noexcept { return m_params; }
  /// The buffers (static `lepton::tensor` members, e.g. batch_norm's running statistics), in order.
  std::vector<model_tensor> const& buffers() const& noexcept { return m_buffers; }
  /// The seed and call counter of every nn::rng_layer (dropout), in for_each_object order.
  std::vector<rng_state> const& rng_layers() const& noexcept { return m_rng; }
  // A temporary view's lists die with it (`for (auto& p : model_view(m).parameters())` would read
  // freed memory): a compile error that says to name the view first.
  template <class D = void> auto parameters() const&& {
    temporary_view<D>();
    return m_params;
  }
  template <class D = void> auto buffers() const&& {
    temporary_view<D>();
    return m_buffers;
  }
  template <class D = void> auto rng_layers() const&& {
    temporary_view<D>();
    return m_rng;
  }
  /// Total number of parameter scalars (the sum of `parameters()[i].size`).
  std::size_t parameter_scalars() const noexcept { return m_scalars; }

private:
  template <class D> static void temporary_view() {
    static_assert(sizeof(D*) == 0,
                  "lepton: the lists of a temporary model_view die with it; name the view "
                  "first: lepton::nn::model_view view(model); for (auto& p : view.parameters())");
  }

  struct fans_entry {
    void const* value;
    double in, out;
  };

  template <class Elem> struct collector {
    model_view& view;
    gradients grads;
    std::vector<fans_entry> fans{};

    template <class O> void object(O& o) {
      using U = std::remove_cv_t<O>;
      if constexpr (rng_layer<U>) view.m_rng.push_back({&o.seed, &o.calls});
      if constexpr (requires { o.lepton_fans([](auto&, double, double) {}); })
        o.lepton_fans([&](auto& p, double fan_in, double fan_out) {
          fans.push_back({static_cast<void const*>(p.value.data()), fan_in, fan_out});
        });
    }
    template <class P> void parameter(std::string_view name, P& p) {
      using T = typename P::value_type;
      static_assert(std::is_void_v<Elem> || std::is_same_v<T, Elem>,
                    "lepton: every parameter must have the element type of the optimizer or reducer that "
                    "reads the model (e.g. use adam<double> for double parameters)");
      if (grads == gradients::allocate && p.grad.shape() != p.value.shape())
        p.grad = typename P::tensor_type(p.value.shape());
      model_tensor e = entry(name, p.value);
      e.grad = p.grad.size() == p.value.size() && p.grad.size() ? static_cast<void*>(p.grad.data()) : nullptr;
      e.frozen = &p.frozen;
      e.offset = view.m_scalars;
      view.m_scalars += e.size;
      view.m_params.push_back(std::move(e));
    }
    template <class B> void buffer(std::string_view name, B& t) { view.m_buffers.push_back(entry(name, t)); }

    template <class Tn> static model_tensor entry(std::string_view name, Tn& t) {
      using V = typename std::remove_cvref_t<Tn>::value_type;
      auto s = t.shape();
      model_tensor e;
      e.name = std::string(name);
      e.type = dtype_of<V>;
      e.shape.assign(s.begin(), s.end());
      e.size = t.size();
      e.value = static_cast<void*>(t.data());
      return e;
    }
  };

  std::vector<model_tensor> m_params;
  std::vector<model_tensor> m_buffers;
  std::vector<rng_state> m_rng;
  std::size_t m_scalars = 0;
};

} // namespace lepton::nn
