// ferry-micro: registers the C benchmarks of micro.c with google benchmark.
// micro_state is google benchmark's State plus the case being run.
#include <benchmark/benchmark.h>

#include <vector>

#include "shim.h"

struct micro_state {
	benchmark::State *st;
	const micro_case *mc;
};

extern "C" bool micro_keep_running(micro_state *s)
{
	return s->st->KeepRunning();
}

extern "C" void micro_set_items(micro_state *s, int64_t per_iter)
{
	s->st->SetItemsProcessed(static_cast<int64_t>(s->st->iterations()) * per_iter);
}

extern "C" void micro_set_bytes(micro_state *s, int64_t per_iter)
{
	s->st->SetBytesProcessed(static_cast<int64_t>(s->st->iterations()) * per_iter);
}

extern "C" int64_t micro_arg(micro_state *s, int i)
{
	return i >= 0 && i < s->mc->nargs ? s->mc->args[i] : 0;
}

extern "C" void micro_skip(micro_state *s, const char *why)
{
	s->st->SkipWithError(why);
}

extern "C" void micro_counter(micro_state *s, const char *name, double v)
{
	s->st->counters[name] = benchmark::Counter(v);
}

int main(int argc, char **argv)
{
	for (int i = 0; i < micro_ncases; i++) {
		const micro_case *mc = &micro_cases[i];
		benchmark::internal::Benchmark *b = benchmark::RegisterBenchmark(
		        mc->name, [mc](benchmark::State &st) {
			        micro_state s{&st, mc};
			        mc->fn(&s);
		        });
		if (mc->nargs > 0)
			b->Args(std::vector<int64_t>(mc->args, mc->args + mc->nargs));
	}
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}
