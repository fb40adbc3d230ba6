// Prints lepton::ops::all, one op a line, tab-separated:
//   name  also  family  differentiable  header  node  functor  summary
// (functor: the elementwise functor's `name`, "" for other ops). scripts/op_list.py reads it to
// check the list against include/lepton/expr/ and to generate the op table of docs/ops.md.
#include <cstdio>
#include <string_view>

#include <lepton/expr/op_list.hpp>

namespace {
void put(std::string_view s, char end) { std::printf("%.*s%c", static_cast<int>(s.size()), s.data(), end); }
} // namespace

int main() {
  namespace ops = lepton::ops;
  ops::for_each(ops::all{}, []<class Op>() {
    put(Op::name, '\t');
    put(Op::also, '\t');
    put(ops::family_name(Op::family), '\t');
    put(Op::differentiable ? "yes" : "no", '\t');
    put(Op::header, '\t');
    put(Op::node, '\t');
    if constexpr (ops::has_functor<Op>)
      put(Op::template functor<double>::name, '\t');
    else
      put("", '\t');
    put(Op::summary, '\n');
  });
  std::printf("# count %zu\n", ops::count);
}
