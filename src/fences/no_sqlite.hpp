// Force-included (-include) into every file of a library that must not use SQLite: the core and
// the MQTT adapter. Any SQLiteCpp or sqlite3.h header included there names a poisoned
// identifier and fails to compile, whatever the include path (Debian puts both in /usr/include,
// where every target sees them). See src/meson.build.
#pragma GCC poison SQLite sqlite3
