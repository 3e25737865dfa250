# Labels of the GoogleTest tests (style.md: cpu, gpu, slow). Their names are known only once
# gtest_discover_tests has listed them, so ctest runs this script after adding them
# (tests/CMakeLists.txt), on the list that discovery leaves in lrsmc_discovered_tests.
#
# gpu: the test reaches the CUDA backend when a device answers (the emulated one included) and
#      skips, or takes the CPU or the error path, without one. scripts/test_cuda_emulation.sh
#      runs these (ctest -L gpu) in the emulation build; every other test runs only in the
#      ordinary build, where it checks the same code. That is every test with Cuda in its name
#      except the host-only arithmetic below, and the two command-line tests whose commands use
#      --device auto: in the emulation build's command line that is the CUDA backend (filter
#      and fit in the workflow, the whole demo), so they check the command line on the device
#      path there. The other CliTest tests name --device cpu or stop at bad input before any
#      backend is made: a second run would check nothing new.
# cpu: every other test.
# slow: the five longest in the emulation build, 8 to 160 s each where every other test takes
#      under 5 s (ctest -j 2 on two shared cores, 2026-12-06, two runs); they still run in the
#      test command. `ctest -LE slow` leaves them out of a quick run. Their COST (seconds, the
#      longer run) makes ctest start them first, so that a fresh build folder does not end on one.
set(gpu_tests "Cuda" "^CliTest\\.SimulateFitFilterSampleWorkflow$" "^CliTest\\.ShortDemoRuns$")
set(host_only_tests
    "^CudaFilterPlan\\."                                        # the filter's memory plan
    "^CudaGradient\\.MemoryPlanCoversTheBackwardPassAndSplits$"  # the gradient's memory plan
    "^FixedPointsCudaDispatch\\.CountsCandidateRegions$"
    "^FixedPointsCudaDispatch\\.CudaRejectsRanksAboveFourAndTanh$")  # refused before any device
# (The gradient's plan is compiled only with CUDA or its emulation: where nvcc is missing, it
# runs in neither build. CI has nvcc.)
# Name and seconds (the other run: 102, 37, 33, 21, 7.6; CliTest.ShortDemoRuns takes 1.2 s in
# the ordinary build, where it runs on the CPU).
set(slow_tests
    "CudaManyParticles.TenMillionParticlesInAll" 158
    "FixedPointsCuda.RepeatedRunsAreIdenticalAndAutoUsesTheGpuWhenLarge" 57
    "CliTest.ShortDemoRuns" 51
    "FixedPointsCuda.MatchesCpuOnRandomNetworks" 33
    "CudaFilter.ReusedWorkspaceGivesWhatAFreshBackendGives" 11)

# A pattern or name that matches no test any more (renamed, removed) is reported, so the lists
# follow the tests.
set(unmatched ${gpu_tests} ${host_only_tests})
foreach(test IN LISTS lrsmc_discovered_tests)
  set(labels cpu)
  foreach(pattern IN LISTS gpu_tests)
    if(test MATCHES "${pattern}")
      set(labels gpu)
      list(REMOVE_ITEM unmatched "${pattern}")
    endif()
  endforeach()
  foreach(pattern IN LISTS host_only_tests)
    if(test MATCHES "${pattern}")
      set(labels cpu)
      list(REMOVE_ITEM unmatched "${pattern}")
    endif()
  endforeach()
  list(FIND slow_tests "${test}" slow)
  if(slow EQUAL -1)
    set_tests_properties("${test}" PROPERTIES LABELS "${labels}")
  else()
    math(EXPR cost_index "${slow} + 1")
    list(GET slow_tests ${cost_index} cost)
    set_tests_properties("${test}" PROPERTIES LABELS "${labels};slow" COST ${cost})
    list(APPEND matched_slow "${test}")
  endif()
endforeach()
foreach(test IN LISTS slow_tests)
  list(FIND matched_slow "${test}" found)
  if(found EQUAL -1 AND NOT test MATCHES "^[0-9]+$")
    list(APPEND unmatched "${test}")
  endif()
endforeach()
if(unmatched)
  message(WARNING "tests/test_labels.cmake: no test matches ${unmatched}; update its lists")
endif()
