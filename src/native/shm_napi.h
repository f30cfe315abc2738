// The JS classes over shared-memory pools (see shm_pool.h): ShmPool, ShmMapping, shmSupported.
#ifndef IPCWIRE_SHM_NAPI_H_
#define IPCWIRE_SHM_NAPI_H_

#include <napi.h>

namespace ipcwire {

void InitShm(Napi::Env env, Napi::Object exports);

}  // namespace ipcwire

#endif  // IPCWIRE_SHM_NAPI_H_
