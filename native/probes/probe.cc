#include "probes/probe.h"

#include <dlfcn.h>
#include <endian.h>
#include <link.h>
#include <liburing.h>
#include <uv.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tfs {

namespace {

// ---------------------------------------------------------------------------------------------
// io_uring

std::string ErrnoName(int err) {
  // libuv's names are the errno names on Linux (uv errors are -errno there).
  const char* name = uv_err_name(-err);
  return name != nullptr ? name : "E" + std::to_string(err);
}

// ---------------------------------------------------------------------------------------------
// libibverbs, opened at run time so the addon loads without rdma-core. Only what we call is
// declared, with the layouts of <infiniband/verbs.h>: IBVERBS_1.1 structs only grow at their ends.

namespace verbs {

struct Context;  // opaque: we only hand it back to the library

// struct ibv_device: two private function pointers, then the public fields.
struct Device {
  void* private_ops[2];
  int node_type;       // enum ibv_node_type
  int transport_type;  // enum ibv_transport_type
  char name[64];
  char dev_name[64];
  char dev_path[256];
  char ibdev_path[256];
};
static_assert(offsetof(Device, node_type) == 16, "ibv_device.node_type");

// struct ibv_device_attr, complete: phys_port_cnt is its last field.
struct DeviceAttr {
  char fw_ver[64];
  uint64_t node_guid;  // big-endian
  uint64_t sys_image_guid;
  uint64_t max_mr_size;
  uint64_t page_size_cap;
  uint32_t vendor_id;
  uint32_t vendor_part_id;
  uint32_t hw_ver;
  int max_qp;
  int max_qp_wr;
  unsigned int device_cap_flags;
  int max_sge;
  int max_sge_rd;
  int max_cq;
  int max_cqe;
  int max_mr;
  int max_pd;
  int max_qp_rd_atom;
  int max_ee_rd_atom;
  int max_res_rd_atom;
  int max_qp_init_rd_atom;
  int max_ee_init_rd_atom;
  int atomic_cap;  // enum ibv_atomic_cap
  int max_ee;
  int max_rdd;
  int max_mw;
  int max_raw_ipv6_qp;
  int max_raw_ethy_qp;
  int max_mcast_grp;
  int max_mcast_qp_attach;
  int max_total_mcast_qp_attach;
  int max_ah;
  int max_fmr;
  int max_map_per_fmr;
  int max_srq;
  int max_srq_wr;
  int max_srq_sge;
  uint16_t max_pkeys;
  uint8_t local_ca_ack_delay;
  uint8_t phys_port_cnt;
};
static_assert(offsetof(DeviceAttr, max_sge) == 120, "ibv_device_attr.max_sge");
static_assert(offsetof(DeviceAttr, max_qp_rd_atom) == 144, "ibv_device_attr.max_qp_rd_atom");
static_assert(offsetof(DeviceAttr, phys_port_cnt) == 227, "ibv_device_attr.phys_port_cnt");
static_assert(sizeof(DeviceAttr) == 232, "sizeof(ibv_device_attr)");

// The exported symbol ibv_query_port takes struct _compat_ibv_port_attr (the header's
// ibv_query_port is a macro that passes the newer, longer struct to an internal entry point).
// The library copies exactly this much into our buffer.
struct PortAttr {
  int state;       // enum ibv_port_state
  int max_mtu;     // enum ibv_mtu
  int active_mtu;  // enum ibv_mtu
  int gid_tbl_len;
  uint32_t port_cap_flags;
  uint32_t max_msg_sz;
  uint32_t bad_pkey_cntr;
  uint32_t qkey_viol_cntr;
  uint16_t pkey_tbl_len;
  uint16_t lid;
  uint16_t sm_lid;
  uint8_t lmc;
  uint8_t max_vl_num;
  uint8_t sm_sl;
  uint8_t subnet_timeout;
  uint8_t init_type_reply;
  uint8_t active_width;
  uint8_t active_speed;
  uint8_t phys_state;
  uint8_t link_layer;
  uint8_t flags;
};
static_assert(offsetof(PortAttr, lid) == 34, "ibv_port_attr.lid");
static_assert(offsetof(PortAttr, link_layer) == 46, "ibv_port_attr.link_layer");
static_assert(sizeof(PortAttr) == 48, "sizeof(_compat_ibv_port_attr)");

union Gid {
  uint8_t raw[16];
  struct {
    uint64_t subnet_prefix;
    uint64_t interface_id;
  } global;
};

// A struct the library fills, inside a zeroed, generously sized buffer: should a library ever
// write past the layout we know, it writes into our slack, not over the stack.
template <typename T>
struct Padded {
  static_assert(sizeof(T) <= 1024, "slack");
  alignas(64) T value{};
  unsigned char slack[1024 - sizeof(T)]{};
};

using GetDeviceListFn = Device** (*)(int* num_devices);
using FreeDeviceListFn = void (*)(Device** list);
using GetDeviceNameFn = const char* (*)(Device* device);
using GetDeviceGuidFn = uint64_t (*)(Device* device);
using OpenDeviceFn = Context* (*)(Device* device);
using CloseDeviceFn = int (*)(Context* context);
using QueryDeviceFn = int (*)(Context* context, DeviceAttr* attr);
using QueryPortFn = int (*)(Context* context, uint8_t port_num, PortAttr* attr);
using QueryGidFn = int (*)(Context* context, uint8_t port_num, int index, Gid* gid);

}  // namespace verbs

struct Verbs {
  std::string path;
  verbs::GetDeviceListFn get_device_list = nullptr;
  verbs::FreeDeviceListFn free_device_list = nullptr;
  verbs::GetDeviceNameFn get_device_name = nullptr;
  verbs::GetDeviceGuidFn get_device_guid = nullptr;
  verbs::OpenDeviceFn open_device = nullptr;
  verbs::CloseDeviceFn close_device = nullptr;
  verbs::QueryDeviceFn query_device = nullptr;
  verbs::QueryPortFn query_port = nullptr;
  verbs::QueryGidFn query_gid = nullptr;
};

template <typename Fn>
void Resolve(void* handle, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

// libibverbs stays loaded once opened: its providers (mlx5, erdma, ...) are loaded by it and link
// back to it, so unloading would not unload anything, and a second scan reuses its device cache.
// One entry per requested name; failures are not cached, so a later install is seen.
std::mutex verbs_mu;
std::map<std::string, std::shared_ptr<const Verbs>>& LoadedVerbs() {
  static auto* loaded = new std::map<std::string, std::shared_ptr<const Verbs>>();
  return *loaded;
}

std::string RequestedVerbs() {
  const char* env = std::getenv("THREEFS_IBVERBS_LIB");
  return env != nullptr && *env != '\0' ? env : "libibverbs.so.1";
}

std::shared_ptr<const Verbs> LoadVerbs(const std::string& requested, std::string* error) {
  std::lock_guard<std::mutex> lock(verbs_mu);
  auto hit = LoadedVerbs().find(requested);
  if (hit != LoadedVerbs().end()) return hit->second;

  void* handle = dlopen(requested.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    *error = "cannot load " + requested + ": " + (why != nullptr ? why : "unknown error");
    return nullptr;
  }
  auto v = std::make_shared<Verbs>();
  v->path = requested;
  struct link_map* map = nullptr;
  if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr && *map->l_name)
    v->path = map->l_name;
  std::string missing;
  Resolve(handle, "ibv_get_device_list", &v->get_device_list, &missing);
  Resolve(handle, "ibv_free_device_list", &v->free_device_list, &missing);
  Resolve(handle, "ibv_get_device_name", &v->get_device_name, &missing);
  Resolve(handle, "ibv_get_device_guid", &v->get_device_guid, &missing);
  Resolve(handle, "ibv_open_device", &v->open_device, &missing);
  Resolve(handle, "ibv_close_device", &v->close_device, &missing);
  Resolve(handle, "ibv_query_device", &v->query_device, &missing);
  Resolve(handle, "ibv_query_port", &v->query_port, &missing);
  Resolve(handle, "ibv_query_gid", &v->query_gid, &missing);
  if (!missing.empty()) {
    *error = v->path + " is not a libibverbs this probe understands: it lacks " + missing;
    dlclose(handle);  // nothing of it was called
    return nullptr;
  }
  LoadedVerbs()[requested] = v;
  return v;
}

// The device list and an open device, released on every path out.
class DeviceList {
 public:
  DeviceList(const Verbs& v, verbs::Device** list) : v_(v), list_(list) {}
  ~DeviceList() {
    if (list_ != nullptr) v_.free_device_list(list_);
  }
  DeviceList(const DeviceList&) = delete;
  DeviceList& operator=(const DeviceList&) = delete;
  verbs::Device* operator[](int i) const { return list_[i]; }

 private:
  const Verbs& v_;
  verbs::Device** list_;
};

class OpenDevice {
 public:
  OpenDevice(const Verbs& v, verbs::Device* device) : v_(v), context_((errno = 0, v.open_device(device))) {}
  ~OpenDevice() {
    if (context_ != nullptr) v_.close_device(context_);
  }
  OpenDevice(const OpenDevice&) = delete;
  OpenDevice& operator=(const OpenDevice&) = delete;
  verbs::Context* get() const { return context_; }

 private:
  const Verbs& v_;
  verbs::Context* context_;
};

// What we learn, gathered in plain C++ first and turned into JS at the end, so that no JS value
// is made while a device is open.
struct PortInfo {
  int port = 0;
  std::string error;
  std::string state;
  std::string link_layer;
  int active_mtu = 0;
  int lid = 0;
  std::string gid0;
};

struct DeviceInfo {
  std::string name;
  std::string guid;
  std::string node_type;
  std::string error;
  bool queried = false;
  std::string fw_ver;
  int max_sge = 0, max_sge_rd = 0, max_qp = 0, max_qp_wr = 0, max_qp_rd_atom = 0, max_cqe = 0;
  int phys_port_cnt = 0;
  int numa_node = -1;
  std::vector<PortInfo> ports;
};

const char* PortStateName(int state) {
  switch (state) {
    case 0: return "NOP";
    case 1: return "DOWN";
    case 2: return "INIT";
    case 3: return "ARMED";
    case 4: return "ACTIVE";
    case 5: return "ACTIVE_DEFER";
    default: return "UNKNOWN";
  }
}

const char* LinkLayerName(int layer) {
  switch (layer) {
    case 1: return "InfiniBand";
    case 2: return "Ethernet";
    default: return "unspecified";  // 0; old libraries leave it 0 for InfiniBand ports too
  }
}

const char* NodeTypeName(int type) {
  switch (type) {
    case 1: return "CA";
    case 2: return "switch";
    case 3: return "router";
    case 4: return "RNIC";
    case 5: return "usNIC";
    case 6: return "usNIC_UDP";
    default: return nullptr;
  }
}

int MtuBytes(int mtu) { return mtu >= 1 && mtu <= 5 ? 128 << mtu : 0; }

std::string Hex4Groups(const uint8_t* bytes, size_t n) {
  std::string out;
  char group[8];
  for (size_t i = 0; i + 1 < n; i += 2) {
    snprintf(group, sizeof group, "%02x%02x", bytes[i], bytes[i + 1]);
    if (!out.empty()) out += ':';
    out += group;
  }
  return out;
}

// RoCE v2 and eRDMA GIDs carry an IPv4 address as ::ffff:a.b.c.d; show it as such, as
// `show_gids` does. Anything else in the 8-group form ibv_devinfo prints.
std::string FormatGid(const verbs::Gid& gid) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(gid.raw, mapped, sizeof mapped) == 0) {
    char text[32];
    snprintf(text, sizeof text, "::ffff:%u.%u.%u.%u", gid.raw[12], gid.raw[13], gid.raw[14], gid.raw[15]);
    return text;
  }
  return Hex4Groups(gid.raw, sizeof gid.raw);
}

std::string FormatGuid(uint64_t be_guid) {
  uint8_t bytes[8];
  const uint64_t host = be64toh(be_guid);
  for (int i = 0; i < 8; i++) bytes[i] = static_cast<uint8_t>(host >> (56 - 8 * i));
  return Hex4Groups(bytes, sizeof bytes);
}

int ReadNumaNode(const std::string& device) {
  // Names come from the library; keep them from walking out of sysfs.
  if (device.empty() || device.find('/') != std::string::npos || device[0] == '.') return -1;
  std::ifstream in("/sys/class/infiniband/" + device + "/device/numa_node");
  int node = -1;
  if (!(in >> node)) return -1;
  return node;
}

void ProbePorts(const Verbs& v, verbs::Context* ctx, DeviceInfo* d) {
  for (int p = 1; p <= d->phys_port_cnt; p++) {
    PortInfo port;
    port.port = p;
    verbs::Padded<verbs::PortAttr> attr;
    // ibv_query_port returns an errno value (not -1 and errno) in every rdma-core release.
    int rc = v.query_port(ctx, static_cast<uint8_t>(p), &attr.value);
    if (rc != 0) {
      port.error = "ibv_query_port: " + ErrnoName(rc < 0 ? -rc : rc);
      d->ports.push_back(port);
      continue;
    }
    port.state = PortStateName(attr.value.state);
    port.link_layer = LinkLayerName(attr.value.link_layer);
    port.active_mtu = MtuBytes(attr.value.active_mtu);
    port.lid = attr.value.lid;
    verbs::Padded<verbs::Gid> gid;
    if (v.query_gid(ctx, static_cast<uint8_t>(p), 0, &gid.value) == 0) port.gid0 = FormatGid(gid.value);
    d->ports.push_back(port);
  }
}

DeviceInfo ProbeDevice(const Verbs& v, verbs::Device* device) {
  DeviceInfo d;
  const char* name = v.get_device_name(device);
  d.name = name != nullptr ? name : "";
  d.guid = FormatGuid(v.get_device_guid(device));
  const char* type = NodeTypeName(device->node_type);
  if (type != nullptr) d.node_type = type;
  d.numa_node = ReadNumaNode(d.name);

  OpenDevice ctx(v, device);
  if (ctx.get() == nullptr) {
    d.error = "ibv_open_device: " + ErrnoName(errno != 0 ? errno : ENODEV);
    return d;
  }
  verbs::Padded<verbs::DeviceAttr> attr;
  int rc = v.query_device(ctx.get(), &attr.value);
  if (rc != 0) {
    d.error = "ibv_query_device: " + ErrnoName(rc < 0 ? -rc : rc);
    return d;
  }
  d.queried = true;
  attr.value.fw_ver[sizeof attr.value.fw_ver - 1] = '\0';
  d.fw_ver = attr.value.fw_ver;
  d.max_sge = attr.value.max_sge;
  d.max_sge_rd = attr.value.max_sge_rd;
  d.max_qp = attr.value.max_qp;
  d.max_qp_wr = attr.value.max_qp_wr;
  d.max_qp_rd_atom = attr.value.max_qp_rd_atom;
  d.max_cqe = attr.value.max_cqe;
  d.phys_port_cnt = attr.value.phys_port_cnt;
  ProbePorts(v, ctx.get(), &d);
  return d;
}

struct RdmaScan {
  bool loaded = false;
  std::string library;
  std::string error;
  std::vector<DeviceInfo> devices;
};

RdmaScan ScanRdma() {
  RdmaScan scan;
  std::string error;
  std::shared_ptr<const Verbs> v = LoadVerbs(RequestedVerbs(), &error);
  if (v == nullptr) {
    scan.error = error;
    return scan;
  }
  scan.loaded = true;
  scan.library = v->path;
  int n = 0;
  errno = 0;
  verbs::Device** raw = v->get_device_list(&n);
  if (raw == nullptr) {
    // ENOSYS: no RDMA support in this kernel (no /sys/class/infiniband_verbs); not a failure.
    scan.error = "ibv_get_device_list: " + ErrnoName(errno != 0 ? errno : ENODEV);
    return scan;
  }
  DeviceList list(*v, raw);
  for (int i = 0; i < n; i++) scan.devices.push_back(ProbeDevice(*v, list[i]));
  return scan;
}

Napi::Object PortToJs(Napi::Env env, const PortInfo& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("port", p.port);
  if (!p.error.empty()) {
    o.Set("error", p.error);
    return o;
  }
  o.Set("state", p.state);
  o.Set("linkLayer", p.link_layer);
  o.Set("activeMtu", p.active_mtu);
  if (!p.gid0.empty()) o.Set("gid0", p.gid0);
  o.Set("lid", p.lid);
  return o;
}

Napi::Object DeviceToJs(Napi::Env env, const DeviceInfo& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", d.name);
  o.Set("guid", d.guid);
  if (!d.node_type.empty()) o.Set("nodeType", d.node_type);
  o.Set("numaNode", d.numa_node);
  if (!d.error.empty()) o.Set("error", d.error);
  if (d.queried) {
    o.Set("fwVer", d.fw_ver);
    o.Set("maxSge", d.max_sge);
    o.Set("maxSgeRd", d.max_sge_rd);
    o.Set("maxQp", d.max_qp);
    o.Set("maxQpWr", d.max_qp_wr);
    o.Set("maxQpRdAtom", d.max_qp_rd_atom);
    o.Set("maxCqe", d.max_cqe);
    o.Set("physPortCnt", d.phys_port_cnt);
  }
  Napi::Array ports = Napi::Array::New(env, d.ports.size());
  for (size_t i = 0; i < d.ports.size(); i++) ports.Set(static_cast<uint32_t>(i), PortToJs(env, d.ports[i]));
  o.Set("ports", ports);
  return o;
}

}  // namespace

Napi::Value IoUringProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct io_uring ring;
  // Two entries is the smallest useful ring: this asks only whether io_uring_setup is allowed
  // (kernel.io_uring_disabled, seccomp in containers, gVisor, old kernels), not how fast it is.
  const int rc = io_uring_queue_init(2, &ring, 0);
  if (rc == 0) io_uring_queue_exit(&ring);
  Napi::Object out = Napi::Object::New(env);
  out.Set("available", rc == 0);
  out.Set("errno", rc == 0 ? 0 : -rc);
  if (rc != 0) out.Set("code", ErrnoName(-rc));
  return out;
}

Napi::Value RdmaDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RdmaScan scan;
  try {
    scan = ScanRdma();
  } catch (const std::exception& e) {
    // Only allocation can throw in the scan; report it like any other probe failure.
    scan = RdmaScan();
    scan.error = std::string("RDMA probe failed: ") + e.what();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("loaded", scan.loaded);
  if (!scan.library.empty()) out.Set("library", scan.library);
  if (!scan.error.empty()) out.Set("error", scan.error);
  Napi::Array devices = Napi::Array::New(env, scan.devices.size());
  for (size_t i = 0; i < scan.devices.size(); i++)
    devices.Set(static_cast<uint32_t>(i), DeviceToJs(env, scan.devices[i]));
  out.Set("devices", devices);
  return out;
}

}  // namespace tfs
