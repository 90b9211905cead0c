// Data-parallel work over MPI (OpenMPI's `mpirun`): the process group, its collectives and the
// bytes they move.
//
// A twotower process started by mpirun (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE in its
// environment) joins MPI_COMM_WORLD in Init; any other process is a group of one and never touches
// MPI, so a run without mpirun is the one-process run it always was. Every collective here is
// called by every rank in the same order (the training step's order); a rank that fails calls
// Abort, which ends the whole job (MPI_Abort), so the others never wait forever.
//
// Collectives follow the MPI 3.1 standard (MPI_Allreduce, MPI_Allgatherv, MPI_Bcast); with a
// group of one they are no-ops that move nothing.
#ifndef TWOTOWER_CORE_DIST_H_
#define TWOTOWER_CORE_DIST_H_

#include <cstdint>
#include <string>
#include <vector>

namespace twotower::dist {

// True when this binary was built with MPI (CMake found OpenMPI; TWOTOWER_MPI).
bool Built();
// True when the environment says mpirun started this process (whatever the build).
bool LaunchedByMpirun();
// Joins MPI_COMM_WORLD when LaunchedByMpirun(); otherwise nothing. Errors: a binary built
// without MPI that mpirun started throws Error (kInvalidArgument) saying so. Call once, first.
void Init(int* argc, char*** argv);
// Leaves MPI (MPI_Finalize) when Init joined it.
void Finalize();
// Ends every rank of the job with `code` (MPI_Abort) when in a group of more than one; else
// std::exit(code).
[[noreturn]] void Abort(int code);

// This process's rank in [0, Size()) and the group's size (1 without mpirun).
int Rank();
int Size();
// Ranks on this machine (MPI_COMM_TYPE_SHARED; 1 without mpirun): `threads: 0` divides the
// machine's cores among them when they are not bound to cores of their own.
int LocalSize();
inline bool IsRoot() { return Rank() == 0; }
inline bool Distributed() { return Size() > 1; }

// The rows [begin, end) of n that `rank` of `size` owns: contiguous, in rank order, sizes
// differing by at most one (the first n % size ranks hold one more). Used for the global batch.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Range Share(int64_t n, int rank, int size);

// What the collectives moved, by purpose (the benchmarks' accounting): the payload this rank
// contributed to each (its buffer for an allreduce, its share for an allgather). The wire
// carries more: a ring allgather forwards the other ranks' shares, a ring allreduce sends about
// twice its buffer.
enum class Traffic { kDense, kSparse, kEmbeddings, kOther };
struct TrafficCounts {
  int64_t dense = 0, sparse = 0, embeddings = 0, other = 0;
  int64_t calls = 0;
};
TrafficCounts TrafficSoFar();

// data[0, n) = the elementwise sum over ranks (MPI_Allreduce, MPI_SUM). The standard does not
// promise every rank the same bits; OpenMPI's algorithms compute each element once and
// distribute it, and the trainer checks the replicas' fingerprints (train/replicas.h).
void AllreduceSum(float* data, int64_t n, Traffic purpose);
void AllreduceSum(double* data, int64_t n, Traffic purpose);
// out = the ranks' `local` arrays concatenated in rank order; counts[r] = rank r's length
// (identical on every rank). out must hold sum(counts) values.
void Allgatherv(const float* local, const std::vector<int64_t>& counts, float* out,
                Traffic purpose);
void Allgatherv(const double* local, const std::vector<int64_t>& counts, double* out,
                Traffic purpose);
void Allgatherv(const int32_t* local, const std::vector<int64_t>& counts, int32_t* out,
                Traffic purpose);
// Each rank's `value`, in rank order (MPI_Allgather).
std::vector<int64_t> Allgather(int64_t value, Traffic purpose = Traffic::kOther);
std::vector<uint64_t> Allgather(uint64_t value, Traffic purpose = Traffic::kOther);
// On rank 0: every rank's `local` bytes, in rank order (MPI_Gather of the sizes, then
// MPI_Gatherv); on the others an empty vector. Traffic: kOther.
std::vector<std::string> GatherToRoot(const std::string& local);
// Rank 0's `text` on every rank (MPI_Bcast of the length, then the bytes).
void Broadcast(std::string* text);
// Throws Error (kConflict) "<what> differs between rank 0 and rank(s) <r...> (<why>)" when any
// rank's `value` differs from rank 0's (a fingerprint of the settings and data, or of the
// parameters, that must be identical on every rank).
void CheckSame(uint64_t value, const std::string& what, const std::string& why);

}  // namespace twotower::dist

#endif  // TWOTOWER_CORE_DIST_H_
