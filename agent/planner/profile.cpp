#include "planner/profile.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#ifdef GPUOFFLOAD_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace gpo::planner {

std::string MachineKey::describe() const {
  return fmt::format("GPU {}, driver {}, CPU {}, {} threads", gpu, driver, cpu.empty() ? "?" : cpu, cores);
}

MachineKey this_machine(int gpu) {
  MachineKey k;
  k.cores = std::max(1u, std::thread::hardware_concurrency());
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) {
      auto c = line.find(':');
      if (c != std::string::npos) k.cpu = line.substr(line.find_first_not_of(" \t", c + 1));
      break;
    }
#ifdef GPUOFFLOAD_HAVE_CUDA
  // The CUDA runtime directly (not backend::cuda_device_count): top links this
  // file without the backends.
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) cudaGetLastError(), n = 0;
  if (gpu >= 0 && gpu < n) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, gpu) == cudaSuccess) k.gpu = p.name;
    int v = 0;
    if (cudaDriverGetVersion(&v) == cudaSuccess) k.driver = v;
  }
#else
  (void)gpu;
#endif
  return k;
}

namespace {

nlohmann::json points_json(const std::vector<Point>& pts) {
  auto a = nlohmann::json::array();
  for (const auto& p : pts) {
    nlohmann::json x{{"size", p.size}, {"batch", p.batch}, {"cpu1_ns", p.cpu1_ns}, {"cpu_ns", p.cpu_ns}};
    if (p.gpu_ns >= 0) x["gpu_ns"] = p.gpu_ns;
    a.push_back(x);
  }
  return a;
}

std::vector<Point> points_from(const nlohmann::json& a) {
  std::vector<Point> v;
  for (const auto& x : a) {
    Point p;
    p.size = x.at("size").get<uint64_t>();
    p.batch = x.at("batch").get<uint64_t>();
    p.cpu1_ns = x.value("cpu1_ns", -1.0);
    p.cpu_ns = x.at("cpu_ns").get<double>();
    p.gpu_ns = x.value("gpu_ns", -1.0);
    if (p.size == 0 || p.batch == 0) throw std::runtime_error("a point with size or batch 0");
    v.push_back(p);
  }
  return v;
}

}  // namespace

nlohmann::json Profile::to_json() const {
  nlohmann::json j;
  j["format"] = kProfileFormat;
  j["version"] = kProfileVersion;
  j["machine"] = {{"gpu", machine.gpu}, {"driver", machine.driver}, {"cpu", machine.cpu}, {"cores", machine.cores}};
  j["created"] = created;
  j["quick"] = quick;
  j["cpu_threads"] = cpu_threads;
  j["ops"] = nlohmann::json::object();
  for (const auto& [name, op] : ops) j["ops"][name] = {{"gpu_kernel", op.gpu_kernel}, {"points", points_json(op.points)}};
  if (!classify.points.empty())
    j["classify"] = {{"rules", classify_rules}, {"gpu_kernel", classify.gpu_kernel},
                     {"points", points_json(classify.points)}};
  j["notes"] = notes;
  return j;
}

Profile Profile::from_json(const nlohmann::json& j) {
  if (!j.is_object() || j.value("format", std::string()) != kProfileFormat)
    throw std::runtime_error(fmt::format("not a gpuoffload profile (\"format\" is not \"{}\")", kProfileFormat));
  const int v = j.value("version", 0);
  if (v != kProfileVersion)
    throw std::runtime_error(fmt::format("profile version {}, this agent reads version {}: run calibrate again", v,
                                         kProfileVersion));
  try {
    Profile p;
    const auto& m = j.at("machine");
    p.machine.gpu = m.at("gpu").get<std::string>();
    p.machine.driver = m.at("driver").get<int>();
    p.machine.cpu = m.at("cpu").get<std::string>();
    p.machine.cores = m.at("cores").get<unsigned>();
    p.created = j.value("created", std::string());
    p.quick = j.value("quick", false);
    p.cpu_threads = j.value("cpu_threads", 0u);
    for (const auto& [name, op] : j.at("ops").items()) {
      OpProfile o;
      o.gpu_kernel = op.value("gpu_kernel", false);
      o.points = points_from(op.at("points"));
      p.ops[name] = std::move(o);
    }
    if (j.contains("classify")) {
      p.classify.gpu_kernel = j["classify"].value("gpu_kernel", false);
      p.classify.points = points_from(j["classify"].at("points"));
      p.classify_rules = j["classify"].value("rules", uint64_t(0));
    }
    if (j.contains("notes")) p.notes = j["notes"].get<std::vector<std::string>>();
    return p;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("malformed profile: {}", e.what()));
  }
}

Loaded load_profile(const std::string& path, const std::optional<MachineKey>& expect) {
  Loaded r;
  std::ifstream f(path);
  if (!f) {
    r.why = "no profile at " + path;
    return r;
  }
  try {
    auto p = Profile::from_json(nlohmann::json::parse(f));
    if (expect && !(p.machine == *expect)) {
      r.why = fmt::format("{}: measured on another machine ({}); this one is {}: run calibrate", path,
                          p.machine.describe(), expect->describe());
      return r;
    }
    r.profile = std::move(p);
  } catch (const std::exception& e) {
    r.why = fmt::format("{}: {}", path, e.what());
  }
  return r;
}

void save_profile(const Profile& p, const std::string& path) {
  namespace fs = std::filesystem;
  fs::path dst(path);
  if (dst.has_parent_path()) fs::create_directories(dst.parent_path());
  const std::string tmp = path + fmt::format(".tmp.{}", getpid());
  {
    std::ofstream f(tmp);
    if (!f) throw std::runtime_error(fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
    f << p.to_json().dump(1) << "\n";
    if (!f.flush()) throw std::runtime_error(fmt::format("cannot write {}", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, dst, ec);
  if (ec) {
    fs::remove(tmp);
    throw std::runtime_error(fmt::format("cannot rename {} to {}: {}", tmp, path, ec.message()));
  }
}

}  // namespace gpo::planner
