// The ns-3 process's data path and control path, in C++ (compiled at run time by cppyy).
//
// Why not ns-3's TapBridge: TapBridge forks a tap-creator helper per tap (about 50 ms each,
// one after another, while the simulator clock is frozen), keeps one reader thread per tap,
// and waits with select(), which cannot watch a descriptor >= 1024.  Here the taps are opened
// by the Python side directly inside their namespaces (testbed.engines.taps), one epoll
// thread reads all of them, and frames cross into the simulator with ScheduleWithContext,
// exactly as TapBridge's FdReader does.  Runtime changes (delay, rate, loss, up/down,
// positions) are applied here in batches, in the simulator thread, without Python: the
// simulator never waits for the Python interpreter lock.
//
// The semantics are TapBridge's UseLocal mode: the tap carries the ns-3 device's MAC (the
// host sets it), frames from the tap are sent with Send(packet, dst, ethertype), frames the
// device receives for this host (or broadcast) are written to the tap with an Ethernet
// header rebuilt from (dst, src, protocol).

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <cmath>
#include <mutex>
#include <utility>
#include <thread>
#include <unordered_map>
#include <vector>

namespace sagin
{

struct Tap
{
    int fd;
    ns3::Ptr<ns3::NetDevice> dev;
    uint32_t context;
    bool ipOnly;  // point-to-point devices carry IPv4 only (no ARP: neighbours are static)
};

struct P2pLink
{
    ns3::Ptr<ns3::PointToPointChannel> channel;
    ns3::Ptr<ns3::PointToPointNetDevice> devs[2];
    ns3::Ptr<ns3::RateErrorModel> errors[2];
    bool up = true;
    double lossPct = 0.0;
};

// One runtime change.  kind 0: a point-to-point link (NaN / -1 = leave unchanged);
// kind 1: a hook (a radio switched on/off, a node moved: ns3_bridge_wifi.h makes them), so
// this file needs no Wi-Fi or mobility header and point-to-point-only processes load faster.
struct Op
{
    int kind;
    int index;
    double a;  // delay ms | x
    double b;  // rate Mbit/s | y
    double c;  // loss % | z
    int up;    // 1 up, 0 down, -1 unchanged
    double d;  // point-to-point: the second device's rate Mbit/s, after b (an asymmetric link)
};

// Lag thresholds (ms) of the per-second histogram: ticks lagging more than each.
constexpr int kLagBins = 6;
constexpr double kLagBinMs[kLagBins] = {1.0, 2.0, 5.0, 10.0, 20.0, 50.0};

struct LagSecond
{
    int64_t second;
    double maxLagMs;
    uint64_t ticks;
    uint64_t lateTicks;  // over 2 ms
    double wall;
    uint64_t over[kLagBins];
};

inline double WallNow()
{
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

inline double MonoNow()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

class Engine
{
  public:
    Engine()
        : m_epoll(epoll_create1(EPOLL_CLOEXEC)),
          m_wake(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC))
    {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = UINT64_MAX;
        epoll_ctl(m_epoll, EPOLL_CTL_ADD, m_wake, &ev);
    }

    // ---- construction (simulator thread, before Run) -----------------------------------
    bool AddTap(int fd, ns3::Ptr<ns3::NetDevice> dev, bool ipOnly)
    {
        Tap* t = new Tap{fd, dev, dev->GetNode()->GetId(), ipOnly};
        uint64_t k = m_taps.size();
        m_taps.push_back(t);
        m_byDev[ns3::PeekPointer(dev)] = t;
        dev->GetNode()->RegisterProtocolHandler(ns3::MakeCallback(&Engine::FromDevice, this),
                                                0,
                                                dev,
                                                true);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = k;
        return epoll_ctl(m_epoll, EPOLL_CTL_ADD, fd, &ev) == 0;
    }

    // A point-to-point link between two devices: ns-3's PointToPointHelper made them; here
    // each gets a receive error model (loss, and 100 % loss while the link is down).
    int AddP2p(ns3::Ptr<ns3::NetDevice> a, ns3::Ptr<ns3::NetDevice> b)
    {
        P2pLink l;
        l.devs[0] = ns3::DynamicCast<ns3::PointToPointNetDevice>(a);
        l.devs[1] = ns3::DynamicCast<ns3::PointToPointNetDevice>(b);
        l.channel = ns3::DynamicCast<ns3::PointToPointChannel>(a->GetChannel());
        for (int i = 0; i < 2; ++i)
        {
            l.errors[i] = ns3::CreateObject<ns3::RateErrorModel>();
            l.errors[i]->SetUnit(ns3::RateErrorModel::ERROR_UNIT_PACKET);
            l.devs[i]->SetReceiveErrorModel(l.errors[i]);
        }
        m_p2p.push_back(l);
        return static_cast<int>(m_p2p.size() - 1);
    }

    int AddHook(std::function<void(const Op&)> hook)
    {
        m_hooks.push_back(hook);
        return static_cast<int>(m_hooks.size() - 1);
    }

    // Applied at once, in the simulator thread (also used while building).
    void ApplyOne(const Op& op)
    {
        if (op.kind == 0)
        {
            SetP2p(m_p2p.at(op.index), op);
        }
        else
        {
            m_hooks.at(op.index)(op);
        }
    }

    // ---- run -----------------------------------------------------------------------------
    void Start(double tickSeconds)
    {
        m_tick = tickSeconds;
        m_reader = std::thread([this]() { ReadLoop(); });
        ns3::Simulator::Schedule(ns3::Seconds(0), &Engine::Tick, this);
    }

    // From any thread: apply a batch in the simulator thread and wait for it.  Returns when
    // it was applied: simulator time, and wall-clock time in seconds since the epoch.
    // atWall > 0: apply at that wall-clock time (seconds since the epoch), not at once.
    // From another thread, the real-time simulator counts a delay from the current real
    // time, so a batch sent ahead of its due time is applied in the simulator's timeline
    // exactly then, whatever the host's path to here cost.
    std::pair<double, double> Submit(const std::vector<Op>& ops, double atWall = 0.0)
    {
        auto batch = std::make_shared<Batch>();
        batch->ops = ops;
        double delay = atWall > 0.0 ? std::max(0.0, atWall - WallNow()) : 0.0;
        ns3::Simulator::ScheduleWithContext(UINT32_MAX,
                                            ns3::Seconds(delay),
                                            &Engine::ApplyBatch,
                                            this,
                                            batch);
        std::unique_lock<std::mutex> lock(batch->mutex);
        batch->cv.wait(lock, [&batch]() { return batch->done; });
        return {batch->sim, batch->wall};
    }

    // The same from parallel arrays (what Python builds cheaply: array.array buffers).
    std::pair<double, double> SubmitArrays(int n,
                                           const int* kind,
                                           const int* index,
                                           const double* a,
                                           const double* b,
                                           const double* c,
                                           const int* up,
                                           const double* d,
                                           double atWall)
    {
        std::vector<Op> ops(n);
        for (int i = 0; i < n; ++i)
        {
            ops[i] = Op{kind[i], index[i], a[i], b[i], c[i], up[i], d[i]};
        }
        return Submit(ops, atWall);
    }

    // From any thread: stop the simulator (Run returns) and the reader thread.
    void RequestStop()
    {
        ns3::Simulator::ScheduleWithContext(UINT32_MAX, ns3::Seconds(0), &Engine::StopNow, this);
    }

    void Join()
    {
        m_stopReader = true;
        uint64_t one = 1;
        ssize_t w = write(m_wake, &one, sizeof(one));
        (void)w;
        if (m_reader.joinable())
        {
            m_reader.join();
        }
    }

    // ---- what Python polls ---------------------------------------------------------------
    uint64_t Ticks() const
    {
        return m_ticks.load();
    }

    double SimNow() const
    {
        return m_simNow.load();
    }

    double LagNowMs() const
    {
        return m_lagNow.load() * 1e3;
    }

    double MaxLagMs() const
    {
        return m_overallMax.load() * 1e3;
    }

    std::vector<LagSecond> DrainLag()
    {
        std::lock_guard<std::mutex> lock(m_lagMutex);
        std::vector<LagSecond> out;
        out.swap(m_lagSeconds);
        return out;
    }

  private:
    struct Batch
    {
        std::vector<Op> ops;
        std::mutex mutex;
        std::condition_variable cv;
        bool done = false;
        double sim = 0.0;
        double wall = 0.0;
    };

    void SetP2p(P2pLink& l, const Op& op)
    {
        if (!std::isnan(op.a))
        {
            l.channel->SetAttribute("Delay",
                                    ns3::TimeValue(ns3::NanoSeconds(std::llround(op.a * 1e6))));
        }
        if (!std::isnan(op.b))
        {
            for (auto& d : l.devs)
            {
                d->SetDataRate(ns3::DataRate(static_cast<uint64_t>(std::llround(op.b * 1e6))));
            }
        }
        if (!std::isnan(op.d))
        {
            l.devs[1]->SetDataRate(
                ns3::DataRate(static_cast<uint64_t>(std::llround(op.d * 1e6))));
        }
        if (!std::isnan(op.c))
        {
            l.lossPct = op.c;
        }
        if (op.up >= 0)
        {
            l.up = op.up == 1;
        }
        double rate = l.up ? l.lossPct / 100.0 : 1.0;
        for (auto& e : l.errors)
        {
            e->SetRate(rate);
            if (rate > 0)
            {
                e->Enable();
            }
            else
            {
                e->Disable();
            }
        }
    }

    void ApplyBatch(std::shared_ptr<Batch> batch)
    {
        for (const Op& op : batch->ops)
        {
            ApplyOne(op);
        }
        std::lock_guard<std::mutex> lock(batch->mutex);
        batch->sim = ns3::Simulator::Now().GetSeconds();
        batch->wall = WallNow();
        batch->done = true;
        batch->cv.notify_all();
    }

    void StopNow()
    {
        ns3::Simulator::Stop();
    }

    // Real-time lag: the simulator never runs ahead of the wall clock, so the smallest
    // (wall - sim) seen is its real-time origin; lag is how far behind that it is now.
    void Tick()
    {
        double sim = ns3::Simulator::Now().GetSeconds();
        double wall = MonoNow();
        if (m_ticks.load() == 0)
        {
            m_origin = wall - sim;
            m_second = static_cast<int64_t>(sim);
        }
        m_origin = std::min(m_origin, wall - sim);
        double lag = (wall - m_origin) - sim;
        int64_t sec = static_cast<int64_t>(sim);
        if (sec != m_second)
        {
            std::lock_guard<std::mutex> lock(m_lagMutex);
            LagSecond row{m_second, m_secMax * 1e3, m_secTicks, m_secLate, WallNow(), {}};
            std::copy(m_secOver, m_secOver + kLagBins, row.over);
            m_lagSeconds.push_back(row);
            m_second = sec;
            m_secMax = 0.0;
            m_secTicks = 0;
            m_secLate = 0;
            std::fill(m_secOver, m_secOver + kLagBins, 0);
        }
        for (int i = 0; i < kLagBins; ++i)
        {
            m_secOver[i] += lag * 1e3 > kLagBinMs[i] ? 1 : 0;
        }
        m_secMax = std::max(m_secMax, lag);
        m_overallMax.store(std::max(m_overallMax.load(), lag));
        m_secTicks += 1;
        m_secLate += lag > 0.002 ? 1 : 0;
        m_simNow.store(sim);
        m_lagNow.store(lag);
        m_ticks.fetch_add(1);
        ns3::Simulator::Schedule(ns3::Seconds(m_tick), &Engine::Tick, this);
    }

    void ReadLoop()
    {
        epoll_event events[64];
        std::vector<uint8_t> buf(65536);
        while (!m_stopReader.load())
        {
            int n = epoll_wait(m_epoll, events, 64, 200);
            for (int i = 0; i < n; ++i)
            {
                uint64_t k = events[i].data.u64;
                if (k == UINT64_MAX)
                {
                    continue;
                }
                Tap* t = m_taps[k];
                for (;;)
                {
                    ssize_t len = read(t->fd, buf.data(), buf.size());
                    if (len <= 0)
                    {
                        break;
                    }
                    auto* frame = static_cast<uint8_t*>(std::malloc(len));
                    std::memcpy(frame, buf.data(), len);
                    ns3::Simulator::ScheduleWithContext(t->context,
                                                        ns3::Seconds(0),
                                                        &Engine::FromTap,
                                                        this,
                                                        t,
                                                        frame,
                                                        static_cast<uint32_t>(len));
                }
            }
        }
    }

    void FromTap(Tap* t, uint8_t* frame, uint32_t len)
    {
        uint16_t type = len >= 14 ? static_cast<uint16_t>((frame[12] << 8) | frame[13]) : 0;
        if (len < 14 || type < 0x0600 || (t->ipOnly && type != 0x0800))
        {
            std::free(frame);
            return;
        }
        ns3::Mac48Address dst;
        dst.CopyFrom(frame);
        ns3::Ptr<ns3::Packet> p = ns3::Create<ns3::Packet>(frame + 14, len - 14);
        std::free(frame);
        t->dev->Send(p, dst, type);
    }

    void FromDevice(ns3::Ptr<ns3::NetDevice> dev,
                    ns3::Ptr<const ns3::Packet> packet,
                    uint16_t protocol,
                    const ns3::Address& src,
                    const ns3::Address& dst,
                    ns3::NetDevice::PacketType type)
    {
        if (type == ns3::NetDevice::PACKET_OTHERHOST)
        {
            return;
        }
        auto it = m_byDev.find(ns3::PeekPointer(dev));
        if (it == m_byDev.end())
        {
            return;
        }
        Tap* t = it->second;
        uint32_t size = packet->GetSize();
        m_out.resize(14 + size);
        ns3::Mac48Address::ConvertFrom(dst).CopyTo(m_out.data());
        ns3::Mac48Address::ConvertFrom(src).CopyTo(m_out.data() + 6);
        m_out[12] = static_cast<uint8_t>(protocol >> 8);
        m_out[13] = static_cast<uint8_t>(protocol & 0xff);
        packet->CopyData(m_out.data() + 14, size);
        // a full tap queue drops the frame, as a real interface would
        ssize_t w = write(t->fd, m_out.data(), m_out.size());
        (void)w;
    }

    int m_epoll;
    int m_wake;
    std::vector<Tap*> m_taps;
    std::unordered_map<ns3::NetDevice*, Tap*> m_byDev;
    std::vector<P2pLink> m_p2p;
    std::vector<std::function<void(const Op&)>> m_hooks;
    std::vector<uint8_t> m_out;
    std::thread m_reader;
    std::atomic<bool> m_stopReader{false};
    double m_tick = 0.005;
    double m_origin = 0.0;
    int64_t m_second = 0;
    double m_secMax = 0.0;
    uint64_t m_secTicks = 0;
    uint64_t m_secLate = 0;
    uint64_t m_secOver[kLagBins] = {};
    std::mutex m_lagMutex;
    std::vector<LagSecond> m_lagSeconds;
    std::atomic<uint64_t> m_ticks{0};
    std::atomic<double> m_simNow{0.0};
    std::atomic<double> m_lagNow{0.0};
    std::atomic<double> m_overallMax{0.0};
};

} // namespace sagin
