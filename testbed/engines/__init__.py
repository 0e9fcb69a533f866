"""Link engines: what carries an emulated link (the `LinkEngine` protocol in base).

* base - the protocol (start, attach, apply, check, stats, stop) and its data.
* ns3, ns3_sim - ns-3 in real time (point-to-point and Wi-Fi), one or more simulator
  processes; ns3setup - the ns-3 wheel's helper-path fix (run by `make setup`).
* netem - point-to-point links as veth + tc netem, where the kernel has sch_netem.
* hwsim, hwsim_nl - Wi-Fi as real mac80211_hwsim radios (created over generic netlink),
  IBSS, 802.11s mesh or hostapd/wpa_supplicant, shaped per station pair.
* features - what this host's kernel offers (netem, hwsim, the OVS module), probed.
"""
