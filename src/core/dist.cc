#include "twotower/core/dist.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "twotower/core/error.h"

#ifdef TWOTOWER_HAVE_MPI
#include <mpi.h>
#endif

namespace twotower::dist {
namespace {

struct State {
  bool joined = false;
  int rank = 0, size = 1, local_size = 1;
  TrafficCounts traffic;
};

State& state() {
  static State s;
  return s;
}

void Count(Traffic purpose, int64_t bytes) {
  TrafficCounts& t = state().traffic;
  ++t.calls;
  switch (purpose) {
    case Traffic::kDense:
      t.dense += bytes;
      break;
    case Traffic::kSparse:
      t.sparse += bytes;
      break;
    case Traffic::kEmbeddings:
      t.embeddings += bytes;
      break;
    case Traffic::kOther:
      t.other += bytes;
      break;
  }
}

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

#ifdef TWOTOWER_HAVE_MPI
// MPI counts are int: a larger message is refused with the sizes, never truncated.
int Count32(int64_t n, const char* what) {
  if (n < 0 || n > std::numeric_limits<int>::max()) {
    throw Error(ErrorCode::kInternal, std::string("MPI ") + what + ": " + std::to_string(n) +
                                          " values in one message (more than MPI's int count)");
  }
  return static_cast<int>(n);
}

void Check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(ErrorCode::kUnavailable, std::string(call) + " failed: " + std::string(text, len));
}

template <typename T>
void GatherV(const T* local, const std::vector<int64_t>& counts, T* out, MPI_Datatype type,
             Traffic purpose) {
  State& s = state();
  std::vector<int> n(s.size), displs(s.size);
  int64_t offset = 0;
  for (int r = 0; r < s.size; ++r) {
    n[r] = Count32(counts[r], "Allgatherv");
    displs[r] = Count32(offset, "Allgatherv");
    offset += counts[r];
  }
  Count(purpose, counts[s.rank] * static_cast<int64_t>(sizeof(T)));
  Check(MPI_Allgatherv(local, n[s.rank], type, out, n.data(), displs.data(), type, MPI_COMM_WORLD),
        "MPI_Allgatherv");
}
#endif

}  // namespace

bool Built() {
#ifdef TWOTOWER_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool LaunchedByMpirun() {
  return Env("OMPI_COMM_WORLD_SIZE") != nullptr || Env("PMIX_RANK") != nullptr ||
         Env("PMI_SIZE") != nullptr;
}

void Init(int* argc, char*** argv) {
  if (!LaunchedByMpirun()) return;
#ifdef TWOTOWER_HAVE_MPI
  State& s = state();
  if (s.joined) return;
  int provided = 0;
  // Collectives are called from the main thread only (OpenMP works between them).
  Check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  s.joined = true;
  if (provided < MPI_THREAD_FUNNELED) {
    MPI_Finalize();
    s.joined = false;
    throw Error(ErrorCode::kUnavailable,
                "this MPI library does not allow OpenMP threads beside MPI calls "
                "(MPI_THREAD_FUNNELED)");
  }
  // A failed collective returns an error (thrown, then Abort ends the job) rather than
  // aborting inside MPI without a message of ours.
  Check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  MPI_Comm_rank(MPI_COMM_WORLD, &s.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &s.size);
  // The ranks on this machine: those sharing its memory (whatever launched them).
  MPI_Comm node;
  Check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  MPI_Comm_size(node, &s.local_size);
  MPI_Comm_free(&node);
#else
  (void)argc;
  (void)argv;
  throw Error(
      "mpirun started this twotower, but it was built without MPI (CMake did not find OpenMPI: "
      "install libopenmpi-dev, scripts/install_deps.sh does, and rebuild)");
#endif
}

void Finalize() {
#ifdef TWOTOWER_HAVE_MPI
  State& s = state();
  if (!s.joined) return;
  MPI_Finalize();
  s.joined = false;
#endif
}

void Abort(int code) {
#ifdef TWOTOWER_HAVE_MPI
  if (state().joined && state().size > 1) {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
  }
#endif
  std::exit(code);
}

int Rank() { return state().rank; }
int Size() { return state().size; }
int LocalSize() { return state().local_size; }

Range Share(int64_t n, int rank, int size) {
  const int64_t base = n / size, extra = n % size;
  Range r;
  r.begin = rank * base + std::min<int64_t>(rank, extra);
  r.end = r.begin + base + (rank < extra ? 1 : 0);
  return r;
}

TrafficCounts TrafficSoFar() { return state().traffic; }

namespace {

// One implementation per collective for every element type the header offers.
#ifdef TWOTOWER_HAVE_MPI
template <typename T>
MPI_Datatype TypeOf();
template <>
MPI_Datatype TypeOf<float>() {
  return MPI_FLOAT;
}
template <>
MPI_Datatype TypeOf<double>() {
  return MPI_DOUBLE;
}
template <>
MPI_Datatype TypeOf<int32_t>() {
  return MPI_INT32_T;
}
template <>
MPI_Datatype TypeOf<int64_t>() {
  return MPI_INT64_T;
}
template <>
MPI_Datatype TypeOf<uint64_t>() {
  return MPI_UINT64_T;
}
#endif

template <typename T>
void SumInPlace(T* data, int64_t n, Traffic purpose) {
  if (!Distributed()) return;
#ifdef TWOTOWER_HAVE_MPI
  Count(purpose, n * static_cast<int64_t>(sizeof(T)));
  Check(MPI_Allreduce(MPI_IN_PLACE, data, Count32(n, "Allreduce"), TypeOf<T>(), MPI_SUM,
                      MPI_COMM_WORLD),
        "MPI_Allreduce");
#else
  (void)data, (void)n, (void)purpose;
#endif
}

template <typename T>
void GatherAll(const T* local, const std::vector<int64_t>& counts, T* out, Traffic purpose) {
#ifdef TWOTOWER_HAVE_MPI
  if (Distributed()) return GatherV(local, counts, out, TypeOf<T>(), purpose);
#endif
  (void)purpose;
  std::copy(local, local + counts.at(0), out);
}

template <typename T>
std::vector<T> GatherOne(T value, Traffic purpose) {
  std::vector<T> out(Size(), value);
#ifdef TWOTOWER_HAVE_MPI
  if (Distributed()) {
    Count(purpose, sizeof(value));
    Check(MPI_Allgather(&value, 1, TypeOf<T>(), out.data(), 1, TypeOf<T>(), MPI_COMM_WORLD),
          "MPI_Allgather");
  }
#endif
  (void)purpose;
  return out;
}

}  // namespace

void AllreduceSum(float* data, int64_t n, Traffic purpose) { SumInPlace(data, n, purpose); }
void AllreduceSum(double* data, int64_t n, Traffic purpose) { SumInPlace(data, n, purpose); }

void Allgatherv(const float* local, const std::vector<int64_t>& counts, float* out,
                Traffic purpose) {
  GatherAll(local, counts, out, purpose);
}
void Allgatherv(const double* local, const std::vector<int64_t>& counts, double* out,
                Traffic purpose) {
  GatherAll(local, counts, out, purpose);
}
void Allgatherv(const int32_t* local, const std::vector<int64_t>& counts, int32_t* out,
                Traffic purpose) {
  GatherAll(local, counts, out, purpose);
}

std::vector<int64_t> Allgather(int64_t value, Traffic purpose) { return GatherOne(value, purpose); }
std::vector<uint64_t> Allgather(uint64_t value, Traffic purpose) {
  return GatherOne(value, purpose);
}

std::vector<std::string> GatherToRoot(const std::string& local) {
  if (!Distributed()) return {local};
  std::vector<std::string> out;
#ifdef TWOTOWER_HAVE_MPI
  const State& s = state();
  const int64_t n = static_cast<int64_t>(local.size());
  std::vector<int64_t> sizes(s.size);
  Check(MPI_Gather(&n, 1, MPI_INT64_T, sizes.data(), 1, MPI_INT64_T, 0, MPI_COMM_WORLD),
        "MPI_Gather");
  std::vector<int> counts(s.size), displs(s.size);
  std::string all;
  if (s.rank == 0) {
    int64_t offset = 0;
    for (int r = 0; r < s.size; ++r) {
      counts[r] = Count32(sizes[r], "Gatherv");
      displs[r] = Count32(offset, "Gatherv");
      offset += sizes[r];
    }
    all.resize(offset);
  }
  Count(Traffic::kOther, n);
  Check(MPI_Gatherv(local.data(), Count32(n, "Gatherv"), MPI_BYTE, all.data(), counts.data(),
                    displs.data(), MPI_BYTE, 0, MPI_COMM_WORLD),
        "MPI_Gatherv");
  if (s.rank == 0) {
    for (int r = 0; r < s.size; ++r) out.push_back(all.substr(displs[r], counts[r]));
  }
#endif
  return out;
}

void Broadcast(std::string* text) {
  (void)text;
  if (!Distributed()) return;
#ifdef TWOTOWER_HAVE_MPI
  int64_t n = static_cast<int64_t>(text->size());
  Check(MPI_Bcast(&n, 1, MPI_INT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  text->resize(n);
  Check(MPI_Bcast(text->data(), Count32(n, "Bcast"), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
  Count(Traffic::kOther, IsRoot() ? n : 0);
#endif
}

void CheckSame(uint64_t value, const std::string& what, const std::string& why) {
  if (!Distributed()) return;
  const std::vector<uint64_t> all = Allgather(value);
  std::string differ;
  for (int r = 1; r < Size(); ++r) {
    if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  }
  if (!differ.empty()) {
    throw Error(ErrorCode::kConflict,
                what + " differs between rank 0 and rank(s) " + differ + " (" + why + ")");
  }
}

}  // namespace twotower::dist
