#pragma once
/// @file dag.hpp
/// @brief DAG semantics of an evaluation: a materialised value that an expression uses in several
///        places is computed once, and the gradients arriving at it from every use are summed
///        before they pass through its backward rule once.
///
/// Expressions are values: `auto h = relu(fc1(x)); auto y = fc2(h) + h;` stores two copies of `h`
/// inside `y`, and a layer's `operator()(auto const& x)` that reads `x` twice does the same. Copies
/// of one expression refer to the same tensors and parameters, so they compute the same value. An
/// evaluation therefore gives each materialised product (matmul, and each lepton::share) an *identity*, an exact
/// serialisation of what determines its value: the node types, the leaves' addresses and shapes,
/// scalar constants and functor parameters, and, for an inner product, that product's own entry.
/// Occurrences with equal identities share one `dag_entry`: the first to run its forward computes
/// the value (the entry's *owner*), the others read it. A node whose identity this file cannot
/// describe (it has no `lepton_identify`) is opaque: its products are never shared, which is the
/// tree semantics of earlier lepton versions, slower but just as correct. Today the opaque ones are
/// batch_norm (training updates running statistics) and softmax cross-entropy (it counts correct
/// predictions): both have side effects that merging copies would change.
///
/// The schedule. Every node that computes a buffer of its own is a *step*: matmul, lepton::share,
/// reductions, softmax, cross-entropy, transpose, convolution, pooling and batch normalisation
/// (backend/cpu/step.hpp). A step occurrence resolves its entry when the evaluation first reaches
/// it; the forward pass, which evaluates operands before the nodes that read them, completes the
/// entries in dependency order, and `dag_table` records that order. The fused elementwise groups
/// between steps are not steps: they run as the loops (or GEMM epilogues) of the steps that read
/// them. So one evaluation lowers the expression to a flat list of steps, each with its saved
/// values (in the step's evaluator) and its output buffer (the entry's `out`).
///
/// Backward runs the list in reverse: an occurrence's backward only adds its incoming gradient to
/// its entry; `run_backward` visits the entries last-completed first and runs each owner's rule
/// once, with the summed gradient, so a value's gradient is complete before it passes on. The rule
/// pushes gradients through the fused group below the step to the next steps' entries (or to the
/// leaves); nothing recurses from one step into another, and work is linear in the number of
/// distinct steps instead of exponential in the nesting depth of reused values.
///
/// The order is established at run time, in the first forward pass, rather than from the
/// expression's type: which occurrences are one value depends on the addresses of the leaves
/// (copies of `h` refer to the same tensors; `fc(x) + fc(y)` has two values of one type), and a
/// list of occurrences built from the type would be exponential in the depth of reused values
/// (N residual blocks hold 2^N copies of the first). The type provides everything else at compile
/// time: which nodes are steps, each step's saved values, fusion and epilogues.
///
/// Workspace. Saved values (the entries' outputs and what their rules read) live in the
/// evaluation's arena until it ends. The gradients summed at entries live in a `buffer_pool` and
/// return to it as soon as their rule has run, and everything a rule allocates in the arena is
/// released when the rule returns (it is dead: contributions to entries are copied into pooled
/// buffers or written there directly through `sink`). So the backward pass needs, beyond the
/// saved values, only the gradients alive at one time plus one rule's temporaries: its peak does
/// not grow with depth more than the saved values do.
///
/// Everything lives in the evaluation's arena and the thread's buffer pool: after the first call
/// with given shapes, no heap allocation happens.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../core/memory.hpp"
#include "../core/shape.hpp"

namespace lepton::detail {

struct eval_context;

/// A unique word per type (the address of a variable template instantiated for it).
template <class T> inline constexpr char type_anchor = 0;
template <class T> std::uint64_t type_word() noexcept {
  return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&type_anchor<T>));
}

/// An exact serialisation of what determines a value (see the file comment), built in the arena.
class identity {
public:
  explicit identity(arena& mem) : m_mem(&mem) {}

  void push(std::uint64_t w) {
    if (m_n == m_cap) grow();
    m_words[m_n++] = w;
  }
  void push_pointer(void const* p) { push(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(p))); }
  /// The bytes of a trivially copyable value (a scalar constant, a functor's parameters).
  template <class X> void push_bytes(X const& x) {
    static_assert(std::is_trivially_copyable_v<X>, "lepton: internal: identity of a non-trivial value");
    if constexpr (!std::is_empty_v<X>) {
      constexpr std::size_t n = (sizeof(X) + 7) / 8;
      std::uint64_t w[n] = {};
      std::memcpy(w, &x, sizeof(X));
      for (std::size_t i = 0; i < n; ++i) push(w[i]);
    }
  }
  /// This value depends on something the serialisation cannot describe: never share it.
  void make_opaque() noexcept { m_opaque = true; }
  bool opaque() const noexcept { return m_opaque; }
  std::uint64_t const* words() const noexcept { return m_words; }
  std::size_t size() const noexcept { return m_n; }

private:
  void grow() {
    std::size_t const cap = m_cap ? 2 * m_cap : 32;
    auto* w = m_mem->allocate_n<std::uint64_t>(cap);
    if (m_n) std::memcpy(w, m_words, m_n * sizeof(std::uint64_t));
    m_words = w;
    m_cap = cap;
  }
  arena* m_mem;
  std::uint64_t* m_words = nullptr;
  std::size_t m_n = 0, m_cap = 0;
  bool m_opaque = false;
};

/// Appends the identity of evaluator `ev` (dag.hpp): its `lepton_identify(id, ctx)` if it has one,
/// else the identity becomes opaque (the value is not shared).
template <class Ev> void identify(Ev& ev, identity& id, eval_context& ctx) {
  if constexpr (requires { ev.lepton_identify(id, ctx); })
    ev.lepton_identify(id, ctx);
  else
    id.make_opaque();
}

/// The identity of a leaf: its type, address and shape.
template <class Node, class T, std::size_t R>
void identify_leaf(identity& id, T const* ptr, shape_t<R> const& s) {
  id.push(type_word<Node>());
  id.push_pointer(ptr);
  for (std::size_t d = 0; d < R; ++d) id.push(s[d]);
}

/// One distinct materialised value of an evaluation.
struct dag_entry {
  std::uint64_t const* words = nullptr; ///< its identity (null for an opaque, unshareable value)
  std::size_t n_words = 0;
  void* owner = nullptr;      ///< the evaluator that computed the value
  void const* out = nullptr;  ///< the value (owned by the evaluation's arena or the destination)
  bool computed = false;      ///< `out` holds the value and may be read by other occurrences
  std::size_t uses = 0;       ///< occurrences resolved to this entry (statistics and tests)
  void const* grad = nullptr; ///< the sum of the gradients received so far (null: none yet), pooled
  /// Runs the owner's backward rule with the summed gradient.
  void (*run)(void* owner, eval_context& ctx, void const* grad) = nullptr;
};

/// Counters of DAG sharing on this thread (for tests and diagnostics; they only grow).
struct dag_counters {
  std::uint64_t computed = 0;      ///< step values computed by their owner (GEMMs run, for matmul)
  std::uint64_t reused = 0;        ///< occurrences that read a product computed elsewhere
  std::uint64_t backward_runs = 0; ///< backward rules run once with a summed gradient
};
inline dag_counters& dag_stats() noexcept {
  thread_local dag_counters c;
  return c;
}

/// The entries of one evaluation and the order in which their values were completed.
class dag_table {
public:
  static constexpr std::size_t npos = ~std::size_t{0};

  explicit dag_table(arena& mem) : m_mem(&mem) {}

  /// The entry whose identity equals `id`, created if there is none (always created when opaque).
  std::size_t resolve(identity const& id) {
    if (!id.opaque())
      for (std::size_t i = 0; i < m_n; ++i) {
        dag_entry const& e = m_entries[i];
        if (e.words && e.n_words == id.size() &&
            std::memcmp(e.words, id.words(), id.size() * sizeof(std::uint64_t)) == 0) {
          ++m_entries[i].uses;
          return i;
        }
      }
    if (m_n == m_cap) grow(m_entries, m_cap);
    dag_entry& e = m_entries[m_n];
    e = dag_entry{};
    if (!id.opaque()) {
      e.words = id.words();
      e.n_words = id.size();
    }
    e.uses = 1;
    return m_n++;
  }

  dag_entry& operator[](std::size_t i) noexcept { return m_entries[i]; }
  std::size_t size() const noexcept { return m_n; }

  /// Records that entry `i` now holds its value (computed by `owner`, backward rule `run`).
  void complete(std::size_t i, void* owner, void const* out, void (*run)(void*, eval_context&, void const*)) {
    dag_entry& e = m_entries[i];
    e.owner = owner;
    e.out = out;
    e.run = run;
    e.computed = true;
    if (m_n_order == m_cap_order) grow(m_order, m_cap_order);
    m_order[m_n_order++] = i;
  }

  /// Runs the deferred backward rules, the last completed value first (defined after eval_context).
  inline void run_backward(eval_context& ctx);

  /// Hands every summed gradient still held back to `pool`.
  void release_grads(buffer_pool& pool) noexcept {
    for (std::size_t i = 0; i < m_n; ++i)
      if (m_entries[i].grad) {
        pool.release(m_entries[i].grad);
        m_entries[i].grad = nullptr;
      }
  }

private:
  template <class X> void grow(X*& p, std::size_t& cap) {
    std::size_t const n = cap ? 2 * cap : 16;
    auto* q = m_mem->allocate_n<X>(n);
    if (cap) std::memcpy(static_cast<void*>(q), static_cast<void const*>(p), cap * sizeof(X));
    p = q;
    cap = n;
  }
  arena* m_mem;
  dag_entry* m_entries = nullptr;
  std::size_t m_n = 0, m_cap = 0;
  std::size_t* m_order = nullptr;
  std::size_t m_n_order = 0, m_cap_order = 0;
};

} // namespace lepton::detail
