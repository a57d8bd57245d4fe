#include "common/thread_name.h"

#include <pthread.h>

#include <cstring>
#include <string>

namespace switchyard {

void NameThisThread(const char* name) {
  std::string truncated(name, strnlen(name, 15));
  pthread_setname_np(pthread_self(), truncated.c_str());
}

}  // namespace switchyard
