// Hooks for the runtime changes that touch Wi-Fi and mobility objects (see ns3_bridge.h):
// included only by ns-3 processes that carry Wi-Fi links.

namespace sagin
{

// up: 0 switches the radio off (nothing sent or received), 1 back on.
inline std::function<void(const Op&)> RadioHook(ns3::Ptr<ns3::WifiPhy> phy)
{
    return [phy](const Op& op) {
        if (op.up == 0 && !phy->IsStateOff())
        {
            phy->SetOffMode();
        }
        else if (op.up == 1 && phy->IsStateOff())
        {
            phy->ResumeFromOff();
        }
    };
}

// (a, b, c): the node's new position in metres.
inline std::function<void(const Op&)> PositionHook(ns3::Ptr<ns3::MobilityModel> model)
{
    return [model](const Op& op) { model->SetPosition(ns3::Vector(op.a, op.b, op.c)); };
}

} // namespace sagin
