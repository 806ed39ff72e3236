// LinuxNetLink shim for the PyPI libzt 1.8.4 wheel (ztcore interop harness).
//
// The wheel's extension module references three LinuxNetLink members that were left out of
// the build, so it cannot be imported. libzt routes traffic through its own lwIP stack and
// never needs the kernel routing table, so empty definitions are enough. Only the symbol
// names matter (checked with `nm -D` on the wheel's .so):
//   _ZN8ZeroTier12LinuxNetLinkC1Ev, _ZN8ZeroTier12LinuxNetLinkD1Ev,
//   _ZN8ZeroTier12LinuxNetLink8delRouteERKNS_11InetAddressES3_S3_PKc
// Built with `g++ -shared -fPIC` by build.py and put in LD_PRELOAD.

namespace ZeroTier {

class InetAddress;

class LinuxNetLink {
public:
    LinuxNetLink();
    ~LinuxNetLink();
    void delRoute(const InetAddress& target, const InetAddress& via, const InetAddress& src, const char* ifaceName);
};

LinuxNetLink::LinuxNetLink() {}

LinuxNetLink::~LinuxNetLink() {}

void LinuxNetLink::delRoute(const InetAddress&, const InetAddress&, const InetAddress&, const char*) {}

}  // namespace ZeroTier
