// Force-included (-include) into every file of a library that must not use paho: the core and
// the SQLite adapter. The paho C++ headers include MQTTAsync.h or MQTTClient.h, which name these
// identifiers; including one there fails to compile. See src/meson.build.
#pragma GCC poison MQTTAsync MQTTClient MQTTProperties
